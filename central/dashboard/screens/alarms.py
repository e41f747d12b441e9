"""The alarm list: acknowledge with a note, open the bus, show it on the map."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from central.dashboard.messages import AckAlarm
from central.dashboard.screens.base import DispatchScreen
from central.dashboard.text import plain
from central.dashboard.widgets.alarm_table import AlarmTable


class AlarmsScreen(DispatchScreen):
    FOLLOWS_FLEET = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "ack", "Acknowledge"),
        Binding("h", "history", "Show closed"),
        Binding("d", "detail", "Open bus"),
        Binding("m", "map", "On map"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.include_closed = False

    def body(self) -> ComposeResult:
        yield Static("", id="alarms-summary")
        yield AlarmTable(id="alarms")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(AlarmTable).focus()

    def on_state(self) -> None:
        table = self.query_one(AlarmTable)
        table.show(self.dashboard.alarms, include_closed=self.include_closed)
        shown = "all, closed ones too" if self.include_closed else "open"
        self.query_one("#alarms-summary", Static).update(
            plain(f"{len(table.rows)} alarms ({shown}) · k or enter: acknowledge with a note")
        )

    def _alarm(self) -> str | None:
        return self.query_one(AlarmTable).selected_alarm()

    def selected_bus(self) -> str | None:
        alarm = self.dashboard.alarms.get(self._alarm() or "")
        return alarm.bus if alarm else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_ack()

    def action_ack(self) -> None:
        alarm_id = self._alarm()
        if alarm_id is not None:
            self.post_message(AckAlarm(alarm_id))

    def action_history(self) -> None:
        self.include_closed = not self.include_closed
        self.on_state()

    def action_detail(self) -> None:
        bus = self.selected_bus()
        if bus:
            self.bus_action("open", bus)

    def action_map(self) -> None:
        self.bus_action("map", self.selected_bus())
