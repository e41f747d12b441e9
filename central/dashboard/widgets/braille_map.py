"""The map: route shapes in braille dots (2x4 per character cell), buses and stops on top.

Each route has its colour; the selected bus's route (its trip's) is drawn on top in yellow.
Every bus is labelled with its id where the label covers no other bus or label (the
followed and the selected bus always).

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
MIN_M, MAX_M = 1.0, 2000.0
LINE = Style(color="bright_black")
ROUTE_COLOURS = tuple(  # one per route, in turn: tells neighbouring lines apart
    Style(color=c) for c in ("blue", "magenta", "cyan", "bright_blue", "bright_magenta", "green")
)
SELECTED_ROUTE = Style(bold=True, color="yellow")  # the selected bus's trip
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
    selected: reactive[str | None] = reactive(None)  # its trip's route is drawn on top

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.shapes: list[list[tuple[float, float]]] = []
        self.shape_routes: list[str] = []  # the route of each shape ("" unknown)
        self.stops: list[Stop] = []
        self.buses: Mapping[str, FleetEntry] = {}
        self.alarms: Mapping[str, BusAlarms] = {}
        self._fitted = False
        # the shapes, rasterised: dots and, per cell, the shape drawn last there (-1: none)
        self._layer: tuple[tuple[object, ...], bytearray, list[int]] | None = None

    def set_geometry(
        self,
        shapes: Sequence[list[tuple[float, float]]],
        stops: Sequence[Stop],
        routes: Sequence[str] | None = None,
    ) -> None:
        self.shapes = [[p for p in shape if on_earth(*p)] for shape in shapes]
        self.shape_routes = list(routes or [])[: len(self.shapes)]
        self.shape_routes += [""] * (len(self.shapes) - len(self.shape_routes))
        self._route_index = {r: i for i, r in enumerate(dict.fromkeys(self.shape_routes))}
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
    def selected_route(self) -> str:
        """The route of the selected bus's trip ("" none)."""
        e = self.buses.get(self.selected or "")
        return (e.route_id or "") if e is not None else ""

    def _shapes_layer(self, cols: int, lines: int) -> tuple[bytearray, list[int]]:
        """The route shapes as braille dots; drawn again only when the view moved. The
        selected bus's route goes last, so that it stays on top of the others."""
        chosen = self.selected_route()
        key = (cols, lines, self.center, self.m_per_dot, len(self.shapes), chosen)
        if self._layer is not None and self._layer[0] == key:
            return self._layer[1], self._layer[2]
        dots = bytearray(cols * lines)
        owner = [-1] * (cols * lines)
        w, h = cols * 2, lines * 4
        order = sorted(range(len(self.shapes)), key=lambda i: self.shape_routes[i] == chosen)
        for index in order:
            prev: tuple[float, float] | None = None
            for lat, lon in self.shapes[index]:
                p = self.project(lat, lon)
                if prev is not None:
                    _line(dots, owner, index, cols, w, h, prev, p)
                prev = p
        self._layer = (key, dots, owner)
        return dots, owner

    def _line_style(self, shape: int, chosen: str) -> Style:
        route = self.shape_routes[shape] if 0 <= shape < len(self.shape_routes) else ""
        if chosen and route == chosen:
            return SELECTED_ROUTE
        if not route:
            return LINE
        return ROUTE_COLOURS[self._route_index.get(route, 0) % len(ROUTE_COLOURS)]

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
        dots, owner = self._shapes_layer(cols, lines)
        chosen = self.selected_route()
        overlay: dict[tuple[int, int], tuple[str, Style]] = {}
        if self.m_per_dot <= STOPS_BELOW_M:
            for stop in self.stops:
                x, y = self.project(stop.lat, stop.lon)
                if 0 <= x < w and 0 <= y < h:
                    overlay[(int(x) // 2, int(y) // 4)] = ("◦", STOP)
        placed: list[tuple[str, int, int, Style]] = []
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
            if bus in (self.follow, self.selected):
                style = FOLLOWED
            overlay[(cx, cy)] = ("●", style)
            placed.append((bus, cx, cy, style))
        self._label(overlay, placed, cols)
        text = Text(no_wrap=True, overflow="crop")
        for row in range(lines):
            base = row * cols
            run: list[str] = []
            run_style = LINE
            for col in range(cols):
                over = overlay.get((col, row))
                if over is None:
                    bits = dots[base + col]
                    style = self._line_style(owner[base + col], chosen) if bits else run_style
                    if style != run_style and run:
                        text.append("".join(run), run_style)
                        run = []
                    run_style = style
                    run.append(chr(0x2800 + bits) if bits else " ")
                    continue
                if run:
                    text.append("".join(run), run_style)
                    run = []
                text.append(over[0], over[1])
            if run:
                text.append("".join(run), run_style)
            if row < lines - 1:
                text.append("\n")
        return text

    def _label(
        self,
        overlay: dict[tuple[int, int], tuple[str, Style]],
        placed: list[tuple[str, int, int, Style]],
        cols: int,
    ) -> None:
        """Each bus's id beside it where it covers no other bus nor label: the followed and
        the selected bus first, then the others in id order."""
        first = (self.follow, self.selected)
        taken: set[tuple[int, int]] = set()
        for bus, cx, cy, style in sorted(placed, key=lambda p: p[0] not in first):
            label = clean(f" {bus}")  # a space between the bus and its id
            cells = [(cx + 1 + i, cy) for i in range(len(label) + 1)]  # a space after it
            if cx + 1 + len(label) > cols and bus not in first:
                continue
            clash = any(c in taken or (c in overlay and c != (cx, cy)) for c in cells)
            if clash and bus not in first:
                continue
            for cell, ch in zip(cells, label, strict=False):
                if cell[0] < cols and overlay.get(cell, ("",))[0] != "●":
                    overlay[cell] = (ch, style)
            taken.update(cells)
            taken.add((cx, cy))


def _line(
    dots: bytearray,
    owner: list[int],
    shape: int,
    cols: int,
    w: int,
    h: int,
    a: tuple[float, float],
    b: tuple[float, float],
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
            cell = (y // 4) * cols + x // 2
            dots[cell] |= DOTS[(x % 2, y % 4)]
            owner[cell] = shape
