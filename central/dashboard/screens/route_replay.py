"""A route replay (issue 18): one bus's positions over a chosen window, on the map.

The positions are central's (`RouteReplay`, read page by page: at most
`MAX_REPLAY_POINTS`, thinned evenly by central). The map (widgets/braille_map.py) draws them
through its own drawing calls: the track as its one shape, and a marker, drawn as the bus,
at the replay's point. Left and right step the marker (shift: a twentieth of the track),
home and end jump, space plays and pauses, 0 fits the track again.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import ClassVar

import msgspec
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import Static

from central.dashboard.screens.base import DispatchScreen
from central.dashboard.text import clock, plain
from central.dashboard.widgets.braille_map import (
    M_PER_DEG_LAT,
    M_PER_DEG_LON,
    MAX_M,
    MIN_M,
    BrailleMap,
    on_earth,
)
from protocols.report_requests import MAX_REPLAY_POINTS, RouteReplay
from protocols.schemas import FleetEntry

TIME_FORMAT = "%Y-%m-%d %H:%M"
PLAY_S = 0.1  # a step while playing
PLAY_STEPS = 300  # a whole replay plays in about this many steps


def time_text(t: float) -> str:
    """A unix time as the replay's form shows it (the dashboard's local time)."""
    return dt.datetime.fromtimestamp(t).strftime(TIME_FORMAT)


def parse_time(text: str) -> float:
    """A time as typed into the replay's form ("YYYY-MM-DD HH:MM", local); ValueError."""
    try:
        return dt.datetime.strptime(text.strip(), TIME_FORMAT).timestamp()
    except ValueError:
        raise ValueError(f"not a time: {text.strip()!r} (YYYY-MM-DD HH:MM)") from None


class RouteReplayScreen(DispatchScreen):
    FOLLOWS_FLEET = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("left", "step(-1)", "Step back", priority=True),
        Binding("right", "step(1)", "Step", priority=True),
        Binding("shift+left", "leap(-1)", "Leap back", show=False, priority=True),
        Binding("shift+right", "leap(1)", "Leap", show=False, priority=True),
        Binding("home", "jump(0)", "Start", show=False),
        Binding("end", "jump(-1)", "End", show=False),
        Binding("space", "play", "Play/pause"),
        Binding("0", "fit_track", "Fit track", priority=True),
    ]

    def __init__(self, bus: str, since: float, until: float) -> None:
        super().__init__()
        self.bus, self.since, self.until = bus, since, until
        self.points: list[tuple[float, float, float]] = []  # t, lat, lon
        self.index = 0
        self.loaded = False
        self.error = ""
        self.in_window = 0
        self._player: Timer | None = None

    def body(self) -> ComposeResult:
        yield Static("", id="map-status")
        yield BrailleMap(id="map")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(BrailleMap).focus()
        self._load()

    # exit_on_error off: a screen closing while its answer is on the way is no crash
    @work(group="replay", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        request = RouteReplay(bus=self.bus, since=self.since, until=self.until)
        points: list[tuple[float, float, float]] = []
        offset: int | None = 0
        while offset is not None and len(points) < MAX_REPLAY_POINTS:
            reply = await self.dashboard.ask(msgspec.structs.replace(request, offset=offset))
            if not reply.ok:
                self.error = reply.error
                self.on_state()
                return
            self.in_window = int(str(reply.result.get("in_window", 0)))
            for p in reply.records:
                t, lat, lon = p.get("t"), p.get("lat"), p.get("lon")
                if not (isinstance(t, float) and isinstance(lat, float) and isinstance(lon, float)):
                    continue  # a central that answers otherwise: that point is left out
                if math.isfinite(t) and on_earth(lat, lon):
                    points.append((t, lat, lon))
            step = reply.result.get("next")
            offset = step if isinstance(step, int) and step > offset else None
        self.points = points[:MAX_REPLAY_POINTS]
        self.index = 0
        self.loaded = True
        self.call_after_refresh(self._draw_track)

    def _draw_track(self) -> None:
        m = self.query_one(BrailleMap)
        m.set_geometry([[(lat, lon) for _, lat, lon in self.points]], [])
        m.follow = None
        m.action_fit()  # the map's own fit first: it fits once, then leaves the view alone
        self.action_fit_track()
        self.on_state()

    def on_state(self) -> None:
        m = self.query_one(BrailleMap)
        status = self.query_one("#map-status", Static)
        window = f"{self.bus} · {time_text(self.since)} to {time_text(self.until)}"
        if self.error:
            status.update(plain(f"{window} · {self.error}"))
            return
        if not self.loaded:
            status.update(plain(f"{window} · loading…"))
            return
        if not self.points:
            m.show({}, {})
            status.update(plain(f"{window} · no positions in this window"))
            return
        t, lat, lon = self.points[self.index]
        m.show({self.bus: FleetEntry(bus=self.bus, online=True, t=t, lat=lat, lon=lon)}, {})
        thinned = f" (of {self.in_window})" if self.in_window > len(self.points) else ""
        playing = "playing" if self._player is not None else "space plays"
        status.update(
            plain(
                f"{window} · {clock(t)} · point {self.index + 1}/{len(self.points)}{thinned}"
                f" · ←/→ step, {playing}, home/end, 0 fit, escape back"
            )
        )

    def marker(self) -> tuple[float, float, float] | None:
        """The replay's point under the marker."""
        return self.points[self.index] if self.points else None

    def action_step(self, step: int) -> None:
        if self.points:
            self.index = min(len(self.points) - 1, max(0, self.index + step))
            self.on_state()

    def action_leap(self, direction: int) -> None:
        self.action_step(direction * max(1, len(self.points) // 20))

    def action_jump(self, where: int) -> None:
        if self.points:
            self.index = where % len(self.points)
            self.on_state()

    def action_play(self) -> None:
        if self._player is not None:
            self._player.stop()
            self._player = None
        elif self.points:
            if self.index >= len(self.points) - 1:
                self.index = 0
            self._player = self.set_interval(PLAY_S, self._tick)
        self.on_state()

    def _tick(self) -> None:
        self.action_step(max(1, len(self.points) // PLAY_STEPS))
        if self.index >= len(self.points) - 1 and self._player is not None:
            self.action_play()  # the end: pause

    def action_fit_track(self) -> None:
        """Centre the map on the track, zoomed to show all of it."""
        m = self.query_one(BrailleMap)
        if not self.points or m.size.width < 4 or m.size.height < 2:
            return
        lats = [p[1] for p in self.points]
        lons = [p[2] for p in self.points]
        lat0 = (min(lats) + max(lats)) / 2
        m.center = (lat0, (min(lons) + max(lons)) / 2)
        width_m = (max(lons) - min(lons)) * M_PER_DEG_LON * math.cos(math.radians(lat0))
        height_m = (max(lats) - min(lats)) * M_PER_DEG_LAT
        dots_w, dots_h = max(2, m.size.width * 2 - 4), max(4, m.size.height * 4 - 8)
        m.m_per_dot = min(MAX_M, max(MIN_M, width_m / dots_w, height_m / dots_h, 2.0))
