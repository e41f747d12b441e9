"""Operator reports (issue 18): trips planned vs operated, kilometres, punctuality by route,
stop and hour, plays per campaign, feedback, over a window of local days; and the way into a
route replay (screens/route_replay.py).

The rows are central's (central/operator_reports.py, as `busfleet central report` prints
them), asked for with `OperatorReport` and read page by page. Each table fits 80 columns:
short headings, and every cell cut to its column's width; all of it literal text.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, cast

import msgspec
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from central.dashboard.screens.base import DispatchScreen
from central.dashboard.screens.form import Field, FormScreen
from central.dashboard.screens.route_replay import RouteReplayScreen, parse_time, time_text
from central.dashboard.text import clock, plain
from protocols.report_requests import MAX_REPORT_DAYS, OperatorReport, OperatorReportKind

MAX_ROWS = 5000  # rows read for one table (pages of central's answer)
DAYS = 7  # the window shown first: the last week, today included
# kind -> title, columns (record key, heading, width): every table fits 80 columns
REPORTS: dict[str, tuple[str, tuple[tuple[str, str, int], ...]]] = {
    "trips": (
        "Trips planned vs operated",
        (("day", "day", 10), ("route", "route", 12), ("planned", "plan", 5),
         ("operated", "ran", 5), ("partial", "part", 5), ("missed", "miss", 5),
         ("late_starts", "late", 5)),
    ),
    "mileage": (
        "Kilometres and operating hours (odometer)",
        (("day", "day", 10), ("bus", "bus", 16), ("km", "km", 9),
         ("operating_h", "hours", 7), ("odometer_faults", "faults", 6)),
    ),
    "punctuality": (
        "Punctuality by route, stop and hour (on time: 1 min early to 5 min late)",
        (("route", "route", 12), ("stop", "stop", 16), ("hour", "hour", 4),
         ("departures", "deps", 6), ("on_time_pct", "on time %", 9),
         ("mean_delay_s", "mean delay s", 12)),
    ),
    "plays": (
        "Plays per campaign and route",
        (("item", "item", 24), ("route", "route", 12), ("plays", "plays", 7),
         ("seconds", "seconds", 9), ("buses", "buses", 5)),
    ),
    "feedback": (
        "Passenger feedback",
        (("t", "time", 11), ("bus", "bus", 12), ("category", "category", 10),
         ("text", "text", 32)),
    ),
}  # fmt: skip
KEYS = "t trips · k km · u punctuality · p plays · b feedback · w window · y replay"


def cell(key: str, value: Any, width: int) -> str:
    """A record's value as its column shows it, cut to the column's width."""
    text = clock(value, "%m-%d %H:%M") if key == "t" else "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


class OperatorReportsScreen(DispatchScreen):
    FOLLOWS_FLEET = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "report('trips')", "Trips"),
        Binding("k", "report('mileage')", "Km"),
        Binding("u", "report('punctuality')", "Punctuality"),
        Binding("p", "report('plays')", "Plays"),
        Binding("b", "report('feedback')", "Feedback"),
        Binding("w", "window", "Window"),
        Binding("y", "replay", "Route replay"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.kind: OperatorReportKind = "trips"
        self.first = self.last = dt.date(2000, 1, 1)  # the last DAYS days, once mounted
        self.route = ""
        self.bus = ""
        self.rows: list[dict[str, Any]] = []

    def body(self) -> ComposeResult:
        yield Static("", id="report-title")
        yield DataTable(id="report", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        today = dt.datetime.fromtimestamp(self.dashboard.clock()).date()
        self.first, self.last = today - dt.timedelta(days=DAYS - 1), today
        super().on_mount()
        self.query_one(DataTable).focus()
        self.action_reload()

    def _title(self, tail: str) -> None:
        title, _ = REPORTS[self.kind]
        where = f" · route {self.route}" if self.route else ""
        where += f" · bus {self.bus}" if self.bus else ""
        window = f"{self.first.isoformat()} to {self.last.isoformat()}"
        self.query_one("#report-title", Static).update(plain(f"{title} · {window}{where} · {tail}"))

    def action_report(self, kind: str) -> None:
        self.kind = cast(OperatorReportKind, kind)  # from the bindings above
        self.action_reload()

    def action_reload(self) -> None:
        self._title("loading…")
        self._load()

    def action_window(self) -> None:
        fields = [
            Field("first", "First day (YYYY-MM-DD)", self.first.isoformat()),
            Field("last", "Last day (YYYY-MM-DD)", self.last.isoformat()),
            Field("route", "Route (trips, punctuality, plays; empty: all)", self.route),
            Field(
                "bus", "Bus (km; empty: all)", self.bus, suggestions=sorted(self.dashboard.fleet)
            ),
        ]
        self.app.push_screen(FormScreen("Report window", fields), self._set_window)

    def _set_window(self, values: dict[str, str] | None) -> None:
        if values is None:
            return
        try:
            first = dt.date.fromisoformat(values["first"].strip())
            last = dt.date.fromisoformat(values["last"].strip())
        except ValueError as exc:
            self.notify(f"not a day: {exc}", severity="error")
            return
        if last < first or (last - first).days >= MAX_REPORT_DAYS:
            self.notify(
                f"from a day to a later one, {MAX_REPORT_DAYS} days at most", severity="error"
            )
            return
        self.first, self.last = first, last
        self.route, self.bus = values["route"].strip(), values["bus"].strip()
        self.action_reload()

    def action_replay(self) -> None:
        buses = sorted(self.dashboard.fleet)
        now = self.dashboard.clock()
        fields = [
            Field("bus", "Bus", self.bus or (buses[0] if buses else ""), suggestions=buses),
            Field("since", "From (YYYY-MM-DD HH:MM, local)", time_text(now - 3600)),
            Field("until", "To (YYYY-MM-DD HH:MM, local)", time_text(now)),
        ]
        self.app.push_screen(FormScreen("Route replay", fields), self._replay)

    def _replay(self, values: dict[str, str] | None) -> None:
        if values is None:
            return
        bus = values["bus"].strip()
        try:
            since, until = parse_time(values["since"]), parse_time(values["until"])
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        if not bus or until <= since:
            self.notify("a bus, and a window that ends after it begins", severity="error")
            return
        self.app.push_screen(RouteReplayScreen(bus, since, until))

    # exit_on_error off: a screen closing while its answer is on the way is no crash
    @work(group="operator-report", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        kind = self.kind
        request = OperatorReport(
            kind=kind, first=self.first, last=self.last, route=self.route or None,
            bus=(self.bus or None) if kind == "mileage" else None,
        )  # fmt: skip
        rows: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None and len(rows) < MAX_ROWS:
            reply = await self.dashboard.ask(msgspec.structs.replace(request, offset=offset))
            if not reply.ok:
                self._title(reply.error)
                return
            rows += reply.records
            step = reply.result.get("next")
            offset = step if isinstance(step, int) and step > offset else None
        self.rows = rows[:MAX_ROWS]
        table = self.query_one(DataTable)
        table.clear(columns=True)
        _, columns = REPORTS[kind]
        for _, heading, width in columns:
            table.add_column(plain(heading), width=width)
        for row in self.rows:
            table.add_row(*(plain(cell(key, row.get(key), width)) for key, _, width in columns))
        cut = f" (first {MAX_ROWS})" if offset is not None else ""
        self._title(f"{len(self.rows)} rows{cut} · {KEYS}")
