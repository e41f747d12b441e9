"""The map screen: route shapes, stops when zoomed in, buses; follow one of them."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from central.dashboard.screens.base import DispatchScreen
from central.dashboard.text import plain
from central.dashboard.widgets.braille_map import BrailleMap, Stop


class MapScreen(DispatchScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "follow", "Follow bus"),
        Binding("right_square_bracket", "next_bus(1)", "Next bus"),
        Binding("left_square_bracket", "next_bus(-1)", "Previous bus"),
        Binding("escape", "unfollow", "Stop following", show=False),
        Binding("enter", "detail", "Open bus"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        self._geometry_loaded = False

    def body(self) -> ComposeResult:
        yield Static("", id="map-status")
        yield BrailleMap(id="map")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(BrailleMap).focus()
        self._load_geometry()

    # exit_on_error off: a screen closing while its answer is on the way is no crash
    @work(group="geometry", exclusive=True, exit_on_error=False)
    async def _load_geometry(self) -> None:
        shapes, stops = await self.dashboard.geometry()
        routes = self.dashboard.shape_routes
        self.query_one(BrailleMap).set_geometry(shapes, [Stop(*s) for s in stops], routes)
        self._geometry_loaded = True
        self.on_state()

    def on_state(self) -> None:
        m = self.query_one(BrailleMap)
        m.show(self.dashboard.fleet, self.dashboard.bus_alarms)
        follow = f"following {m.follow}" if m.follow else "f: follow the selected bus"
        sel = self.selected or "none"
        bus = self.dashboard.fleet.get(self.selected or "")
        if bus is not None and bus.route_id:
            sel += f" on route {bus.route_id}" + (f" trip {bus.trip_id}" if bus.trip_id else "")
        shapes = f"{len(m.shapes)} shapes" if self._geometry_loaded else "loading shapes…"
        self.query_one("#map-status", Static).update(
            plain(
                f"{m.m_per_dot:.0f} m per dot · {shapes} · selected {sel} ([ ] to change)"
                f" · {follow} · arrows pan, + - zoom, 0 fit"
            )
        )

    def focus_bus(self, bus: str | None) -> None:
        if bus:
            self.selected = bus
            self.query_one(BrailleMap).follow = bus
            self.query_one(BrailleMap).selected = bus
        self.on_state()

    def selected_bus(self) -> str | None:
        return self.selected

    def action_follow(self) -> None:
        buses = sorted(self.dashboard.fleet)
        if self.selected is None and buses:
            self.selected = buses[0]
        self.focus_bus(self.selected)

    def action_unfollow(self) -> None:
        self.query_one(BrailleMap).follow = None
        self.on_state()

    def action_next_bus(self, step: int) -> None:
        buses = sorted(b for b, e in self.dashboard.fleet.items() if e.lat is not None)
        if not buses:
            return
        index = buses.index(self.selected) if self.selected in buses else -step
        self.focus_bus(buses[(index + step) % len(buses)])

    def action_detail(self) -> None:
        if self.selected:
            self.bus_action("open", self.selected)
