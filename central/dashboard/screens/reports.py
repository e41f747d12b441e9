"""Reports: proof of play, punctuality per route, the passenger feedback inbox."""

from __future__ import annotations

from typing import ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from central.dashboard.screens.base import DispatchScreen
from central.dashboard.text import plain
from protocols.requests import Report, ReportKind

TITLES = {
    "punctuality": "Punctuality per route (on time: 1 min early to 5 min late)",
    "plays": "Proof of play (per day, item, route and bus)",
    "feedback": "Passenger feedback inbox (newest first)",
}
DAYS = (1, 7, 31)


class ReportsScreen(DispatchScreen):
    FOLLOWS_FLEET = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("u", "report('punctuality')", "Punctuality"),
        Binding("o", "report('plays')", "Proof of play"),
        Binding("b", "report('feedback')", "Feedback"),
        Binding("d", "days", "Days"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.what: ReportKind = "punctuality"
        self.days = 1

    def body(self) -> ComposeResult:
        yield Static("", id="report-title")
        yield DataTable(id="report", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(DataTable).focus()
        self.action_reload()

    def action_report(self, what: str) -> None:
        self.what = cast(ReportKind, what)  # from the bindings above
        self.action_reload()

    def action_days(self) -> None:
        self.days = DAYS[(DAYS.index(self.days) + 1) % len(DAYS)] if self.days in DAYS else 1
        self.action_reload()

    def action_reload(self) -> None:
        title = self.query_one("#report-title", Static)
        title.update(plain(f"{TITLES[self.what]} · last {self.days} day(s) · loading…"))
        self._load()

    # exit_on_error off: a screen closing while its answer is on the way is no crash
    @work(group="report", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        reply = await self.dashboard.ask(Report(what=self.what, days=self.days))
        title = self.query_one("#report-title", Static)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        if not reply.ok:
            title.update(plain(f"{TITLES[self.what]}: {reply.error}"))
            return
        rows = reply.tables.get(self.what, [])
        cut = " (cut to fit)" if reply.result.get("truncated") else ""
        keys = "u punctuality · o proof of play · b feedback · d days"
        title.update(
            plain(f"{TITLES[self.what]} · last {self.days} day(s) · {len(rows)} rows{cut} · {keys}")
        )
        if rows:
            names = list(rows[0])
            table.add_columns(*map(plain, names))
            for row in rows:
                table.add_row(*(plain(row.get(n)) for n in names))
