"""The map: route shapes in braille dots (2x4 per character cell), buses and stops on top.

A local equirectangular projection around the view's centre is exact enough for a city.
Pan with the arrows, zoom with + and -, follow a bus (it stays in the middle), 0 fits the
fleet. Stops appear once zoomed in far enough to tell them apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widget import Widget

from central.dashboard.state import BusAlarms
from central.dashboard.text import clean
from protocols.schemas import FleetEntry

M_PER_DEG_LAT = 110_540.0
M_PER_DEG_LON = 111_320.0
# Braille dot bits for (column, row) within a cell (Unicode's numbering).
DOTS = {
    (0, 0): 0x01,
    (0, 1): 0x02,
    (0, 2): 0x04,
    (1, 0): 0x08,
    (1, 1): 0x10,
    (1, 2): 0x20,
    (0, 3): 0x40,
    (1, 3): 0x80,
}
STOPS_BELOW_M = 12.0  # metres per dot: closer than this, stops are drawn
LABELS_BELOW_M = 40.0  # and bus ids beside every bus
MIN_M, MAX_M = 1.0, 2000.0
LINE = Style(color="bright_black")
STOP = Style(color="cyan")
BUS = Style(bold=True, color="green")
BUS_OFF = Style(color="bright_black")
BUS_ALARM = Style(bold=True, color="red")
FOLLOWED = Style(bold=True, color="black", bgcolor="yellow")


def on_earth(lat: float | None, lon: float | None) -> bool:
    """Whether a point can be drawn: a bus or a feed far off the globe is left off the map."""
    return (
        lat is not None
        and lon is not None
        and math.isfinite(lat)
        and math.isfinite(lon)
        and -90.0 <= lat <= 90.0
        and -180.0 <= lon <= 180.0
    )


@dataclass(frozen=True, slots=True)
class Stop:
    id: str
    name: str
    lat: float
    lon: float


class BrailleMap(Widget, can_focus=True):
    """Shapes, stops and buses around `center` at `m_per_dot` metres per braille dot."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "pan(-1, 0)", "Pan", show=False),
        Binding("right", "pan(1, 0)", "Pan", show=False),
        Binding("up", "pan(0, -1)", "Pan", show=False),
        Binding("down", "pan(0, 1)", "Pan", show=False),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in"),
        Binding("minus", "zoom(2)", "Zoom out"),
        Binding("0", "fit", "Fit fleet"),
    ]

    m_per_dot: reactive[float] = reactive(50.0)
    center: reactive[tuple[float, float]] = reactive((-16.92, 145.77))
    follow: reactive[str | None] = reactive(None)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.shapes: list[list[tuple[float, float]]] = []
        self.stops: list[Stop] = []
        self.buses: Mapping[str, FleetEntry] = {}
        self.alarms: Mapping[str, BusAlarms] = {}
        self._fitted = False
        self._layer: tuple[tuple[object, ...], bytearray] | None = None  # shapes, rasterised

    def set_geometry(
        self, shapes: Sequence[list[tuple[float, float]]], stops: Sequence[Stop]
    ) -> None:
        self.shapes = [[p for p in shape if on_earth(*p)] for shape in shapes]
        self.stops = [s for s in stops if on_earth(s.lat, s.lon)]
        self._layer = None
        self.refresh()

    def show(self, buses: Mapping[str, FleetEntry], alarms: Mapping[str, BusAlarms]) -> None:
        self.buses, self.alarms = buses, alarms
        followed = buses.get(self.follow or "")
        if followed is not None and followed.lat is not None and followed.lon is not None:
            if on_earth(followed.lat, followed.lon):
                self.center = (followed.lat, followed.lon)
        elif not self._fitted and any(on_earth(e.lat, e.lon) for e in buses.values()):
            self.action_fit()
        self.refresh()

    # -- keys -------------------------------------------------------------------------------
    def action_pan(self, dx: int, dy: int) -> None:
        self.follow = None  # panning away stops following
        step_m = self.m_per_dot * 2 * max(4, self.size.width // 8)
        lat, lon = self.center
        self.center = (
            lat - dy * step_m / 2 / M_PER_DEG_LAT,
            lon + dx * step_m / (M_PER_DEG_LON * math.cos(math.radians(lat))),
        )

    def action_zoom(self, factor: float) -> None:
        self.m_per_dot = min(MAX_M, max(MIN_M, self.m_per_dot * factor))

    def on_resize(self) -> None:
        if not self._fitted:
            self.action_fit()

    def action_fit(self) -> None:
        if self.size.width < 4 or self.size.height < 2:
            return  # not laid out yet: fitted on the first resize
        points = [
            (e.lat, e.lon)
            for e in self.buses.values()
            if e.lat is not None and e.lon is not None and on_earth(e.lat, e.lon)
        ]
        if not points:
            points = [p for shape in self.shapes for p in shape[:: max(1, len(shape) // 8)]]
        if not points:
            return
        lats = [p[0] for p in points]
        lons = [p[1] for p in points]
        lat0 = (min(lats) + max(lats)) / 2
        self.center = (lat0, (min(lons) + max(lons)) / 2)
        width_m = (max(lons) - min(lons)) * M_PER_DEG_LON * math.cos(math.radians(lat0))
        height_m = (max(lats) - min(lats)) * M_PER_DEG_LAT
        dots_w, dots_h = max(2, self.size.width * 2 - 4), max(4, self.size.height * 4 - 8)
        self.m_per_dot = min(MAX_M, max(MIN_M, width_m / dots_w, height_m / dots_h, 5.0))
        self._fitted = True

    # -- drawing ----------------------------------------------------------------------------
    def _shapes_layer(self, cols: int, lines: int) -> bytearray:
        """The route shapes as braille dots; drawn again only when the view moved."""
        key = (cols, lines, self.center, self.m_per_dot, len(self.shapes))
        if self._layer is not None and self._layer[0] == key:
            return self._layer[1]
        dots = bytearray(cols * lines)
        w, h = cols * 2, lines * 4
        for shape in self.shapes:
            prev: tuple[float, float] | None = None
            for lat, lon in shape:
                p = self.project(lat, lon)
                if prev is not None:
                    _line(dots, cols, w, h, prev, p)
                prev = p
        self._layer = (key, dots)
        return dots

    def project(self, lat: float, lon: float) -> tuple[float, float]:
        """Dot coordinates of a point: (0, 0) is the top left dot of the widget."""
        lat0, lon0 = self.center
        w, h = self.size.width * 2, self.size.height * 4
        x = (lon - lon0) * M_PER_DEG_LON * math.cos(math.radians(lat0)) / self.m_per_dot
        y = (lat0 - lat) * M_PER_DEG_LAT / self.m_per_dot
        return x + w / 2, y + h / 2

    def render(self) -> Text:
        cols, lines = self.size.width, self.size.height
        if cols <= 0 or lines <= 0:
            return Text()
        w, h = cols * 2, lines * 4
        dots = self._shapes_layer(cols, lines)
        overlay: dict[tuple[int, int], tuple[str, Style]] = {}
        if self.m_per_dot <= STOPS_BELOW_M:
            for stop in self.stops:
                x, y = self.project(stop.lat, stop.lon)
                if 0 <= x < w and 0 <= y < h:
                    overlay[(int(x) // 2, int(y) // 4)] = ("◦", STOP)
        labels = self.m_per_dot <= LABELS_BELOW_M
        for bus, e in sorted(self.buses.items()):
            if e.lat is None or e.lon is None or not on_earth(e.lat, e.lon):
                continue
            x, y = self.project(e.lat, e.lon)
            if not (0 <= x < w and 0 <= y < h):
                continue
            cx, cy = int(x) // 2, int(y) // 4
            alarm = self.alarms.get(bus)
            style = BUS if e.online else BUS_OFF
            if alarm is not None and alarm.unacked:
                style = BUS_ALARM
            if bus == self.follow:
                style = FOLLOWED
            overlay[(cx, cy)] = ("●", style)
            if labels or bus == self.follow:
                for i, ch in enumerate(clean(f" {bus}")[: max(0, cols - cx - 1)]):
                    overlay.setdefault((cx + 1 + i, cy), (ch, style))
        text = Text(no_wrap=True, overflow="crop")
        for row in range(lines):
            base = row * cols
            run: list[str] = []
            for col in range(cols):
                over = overlay.get((col, row))
                if over is None:
                    bits = dots[base + col]
                    run.append(chr(0x2800 + bits) if bits else " ")
                    continue
                if run:
                    text.append("".join(run), LINE)
                    run = []
                text.append(over[0], over[1])
            if run:
                text.append("".join(run), LINE)
            if row < lines - 1:
                text.append("\n")
        return text


def _line(
    dots: bytearray, cols: int, w: int, h: int, a: tuple[float, float], b: tuple[float, float]
) -> None:
    """Set the dots of segment a-b that fall inside the canvas."""
    (x0, y0), (x1, y1) = a, b
    if (x0 < 0 and x1 < 0) or (y0 < 0 and y1 < 0) or (x0 >= w and x1 >= w) or (y0 >= h and y1 >= h):
        return
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    if steps > 4 * (w + h):  # mostly off screen: sample it coarser, still crossing the view
        steps = 4 * (w + h)
    for i in range(steps + 1):
        t = i / steps
        x, y = int(x0 + (x1 - x0) * t), int(y0 + (y1 - y0) * t)
        if 0 <= x < w and 0 <= y < h:
            dots[(y // 4) * cols + x // 2] |= DOTS[(x % 2, y % 4)]
