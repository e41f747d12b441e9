"""The main screen: a summary line, the search box and the fleet table."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Static

from central.dashboard.screens.base import DispatchScreen
from central.dashboard.state import View, summary
from central.dashboard.text import plain
from central.dashboard.widgets.fleet_table import SORTABLE, FleetTable


class FleetScreen(DispatchScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("escape", "clear_search", "Clear search", show=False),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse sort", show=False),
        Binding("x", "problems", "Problems only"),
        Binding("t", "assign", "Assign"),
        Binding("p", "playlist", "Playlist"),
        Binding("c", "command", "Command"),
        Binding("k", "ack", "Acknowledge"),
        Binding("m", "map", "On map", show=False),
    ]

    def body(self) -> ComposeResult:
        yield Static("connecting…", id="summary")
        yield Input(
            placeholder="search: bus, route, trip, stop (enter: back to the table)", id="search"
        )
        yield FleetTable(id="fleet", clock=self.dashboard.clock)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(FleetTable).focus()

    @property
    def table(self) -> FleetTable:
        return self.query_one(FleetTable)

    def on_state(self) -> None:
        d = self.dashboard
        self.table.show(d.fleet, d.bus_alarms, d.stop_names)
        view = self.table.view
        shown = f"{len(self.table.row_keys())} shown"
        order = f"sorted by {view.sort}{' (reversed)' if view.reverse else ''}"
        only = " · problems only" if view.problems_only else ""
        search = f" · search {view.search!r}" if view.search else ""
        text = f"{summary(d.fleet, d.stats)} · {shown} · {order}{only}{search} · {d.link_text}"
        # one line whatever it says: no layout of the whole screen for it (at 5,000 buses that
        # was a 30 ms pass twice a second)
        self.query_one("#summary", Static).update(plain(text), layout=False)

    def selected_bus(self) -> str | None:
        return self.table.cursor_bus

    def _view(self, **changes: object) -> None:
        from dataclasses import replace

        self.table.set_view(replace(self.table.view, **changes))  # type: ignore[arg-type]
        self.on_state()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._view(search=event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()

    def on_fleet_table_selected(self, event: FleetTable.Selected) -> None:
        self.bus_action("open", event.bus)

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_clear_search(self) -> None:
        self.query_one("#search", Input).value = ""
        self.table.focus()

    def action_sort(self) -> None:
        current = self.table.view.sort
        nxt = (
            SORTABLE[(SORTABLE.index(current) + 1) % len(SORTABLE)]
            if current in SORTABLE
            else "bus"
        )
        self._view(sort=nxt)

    def action_reverse(self) -> None:
        self._view(reverse=not self.table.view.reverse)

    def action_problems(self) -> None:
        self._view(problems_only=not self.table.view.problems_only)

    def action_assign(self) -> None:
        self.bus_action("assign", self.selected_bus())

    def action_playlist(self) -> None:
        self.bus_action("playlist", self.selected_bus())

    def action_command(self) -> None:
        self.bus_action("command", self.selected_bus())

    def action_ack(self) -> None:
        self.bus_action("ack", self.selected_bus())

    def action_map(self) -> None:
        self.bus_action("map", self.selected_bus())


__all__ = ["FleetScreen", "View"]
