"""The alarm list: still to acknowledge first, then the most severe, then the newest."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from central.dashboard.state import SEVERITY, UNACKED, AlarmState, open_alarms
from central.dashboard.text import clock, plain
from protocols.schemas import Alarm

COLUMNS = (
    ("severity", "Severity", 10),
    ("state", "State", 8),
    ("raised", "Raised", 8),
    ("bus", "Bus", 10),
    ("kind", "Alarm", 18),
    ("what", "Details", 28),
    ("acked", "Acknowledged", 48),
)
STYLES = {4: "bold white on red", 3: "bold red", 2: "yellow"}


def row(a: Alarm) -> tuple[Text, ...]:
    """The cells of one alarm: literal text, whatever the bus put in it."""
    style = STYLES.get(a.severity, "") if a.state in UNACKED else "dim"
    what = " ".join(x for x in (a.subject, a.text) if x)
    acked = f"{a.acked_by} {clock(a.ack_t)}: {a.ack_note or ''}" if a.acked_by else ""
    return (
        plain(SEVERITY.get(a.severity, str(a.severity)), style),
        plain(a.state, style),
        plain(clock(a.raised_t)),
        plain(a.bus),
        plain(a.kind),
        plain(what),
        plain(acked),
    )


class AlarmTable(DataTable[Text]):
    """The dispatcher acknowledges the alarm under the cursor (the screen's `k`)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Acknowledge")]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, alarms: AlarmState, *, include_closed: bool = False) -> None:
        current = self.selected_alarm()
        self.clear()
        for a in open_alarms(alarms, include_closed=include_closed):
            self.add_row(*row(a), key=a.id)
        if current is not None and current in self.rows:
            self.move_cursor(row=self.get_row_index(current))

    def selected_alarm(self) -> str | None:
        if not self.rows or self.cursor_row >= len(self.rows):
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value
