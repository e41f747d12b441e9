"""The audit log (issue 18): who asked central what, when, and the answer.

One table from central's answer to `AuditLog` (the last SINCE_S, every page): the newest
first, each row the time, the account and its role, the request's type, ok or NOT DONE, and
the answer (the error, or the result in short); the line below the table shows the selected
row's whole request. The audit log holds every change and every refusal (central/roles.py).
Everything in it is shown as literal text (central/dashboard/text.py); it fits 80 columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from central.dashboard.screens.base import DispatchScreen
from central.dashboard.text import clock, plain
from protocols.people_requests import AuditLog
from protocols.requests import Record

__all__ = ["AuditScreen", "audit_cells"]

SINCE_S = 86_400.0
MAX_PAGES = 50  # a central that keeps answering "next" is not followed forever
COLUMNS = ("time", "account", "role", "request", "answer")


def _short(value: object, width: int, style: str = "") -> Text:
    text = plain("" if value is None else value, style)
    text.truncate(width, overflow="ellipsis")
    return text


def audit_cells(r: Mapping[str, Any]) -> tuple[Text, ...]:
    """One audit row: time, account, role, request type, and the answer (red when not done)."""
    ok = bool(r.get("ok"))
    answer = ("ok " if ok else "NOT DONE: ") + str(r.get("answer") or "")
    return (
        plain(clock(r.get("t"), "%d %H:%M:%S")),
        _short(r.get("account"), 14),
        _short(r.get("role") or "-", 10),
        _short(r.get("request"), 16),
        _short(answer, 30, "" if ok else "red"),
    )


class AuditScreen(DispatchScreen):
    FOLLOWS_FLEET = False

    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "reload", "Refresh")]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Record] = []
        self._mounted = False

    def body(self) -> ComposeResult:
        yield Static("Audit log: every change and every refusal, the last day", classes="section")
        yield DataTable(id="audit", cursor_type="row")
        yield Static("", id="audit-detail")

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#audit", DataTable)
        table.add_columns(*COLUMNS)
        table.focus()
        self._mounted = True
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    # exit_on_error off: a screen closing while its answer is on the way is no crash
    @work(group="audit", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        request = AuditLog(since=max(0.0, self.dashboard.clock() - SINCE_S))
        rows: list[Record] = []
        error = ""
        for _ in range(MAX_PAGES):
            reply = await self.dashboard.ask(request)
            if not reply.ok:
                error = reply.error
                break
            rows.extend(reply.records)
            after = reply.result.get("next")
            if not isinstance(after, int) or after <= request.offset:
                break
            request = msgspec.structs.replace(request, offset=after)
        self.rows = rows[::-1]  # the newest first
        table = self.query_one("#audit", DataTable)
        table.clear()
        for n, r in enumerate(self.rows):
            table.add_row(*audit_cells(r), key=str(r.get("id", n)))
        detail = self.query_one("#audit-detail", Static)
        if error:
            detail.update(plain(f"cannot read the audit log: {error}", "red"))
        elif not rows:
            detail.update(plain("nothing in the audit log for the last day"))
        else:
            self._detail(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        if 0 <= index < len(self.rows):
            r = self.rows[index]
            said = f"{r.get('summary')} → {'ok' if r.get('ok') else 'NOT DONE'}: {r.get('answer')}"
            self.query_one("#audit-detail", Static).update(plain(said))

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self._mounted:  # shown again: there may be more
            self.action_reload()
