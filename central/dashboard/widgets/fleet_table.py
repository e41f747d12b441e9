"""The fleet table: one line per bus, drawn with Textual's line API.

Only the lines on screen are rendered, so 1,000 buses updating at 1 Hz cost a sort and the
visible lines per refresh, not a widget per cell (toolong's approach). The cursor stays on its
bus when the rows are re-sorted or filtered; the header stays put when the rows scroll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from central.dashboard.state import BusAlarms, View, rows
from central.dashboard.text import clean
from central.dashboard.widgets.fleet_columns import (
    COLUMNS,
    KEYS,
    Layout,
    delay_text,
    fit,
    layout,
    line_width,
    longest,
)
from protocols.schemas import FleetEntry

SORTABLE = ("bus", "alarm", "status", "route", "delay", "speed", "seen", "wifi")

HEADER = Style(bold=True, reverse=True)
CURSOR = Style(reverse=True)
OFFLINE = Style(dim=True)
ALARM_STYLES = {4: Style(bold=True, color="white", bgcolor="red"), 3: Style(bold=True, color="red")}
WARNING = Style(color="yellow")
ACKED = Style(dim=True)


def timetable_cell(e: FleetEntry) -> str:
    """The timetable a bus runs, compactly: "v3", "v3→4" while another is staged or desired,
    "local" for a bootstrap feed, "—" for none; "!" after it when the bus refused a package."""
    if e.timetable is not None:
        runs = f"v{e.timetable}"
    else:
        runs = "local" if e.timetable_source == "local" else "—"
    nxt = next(
        (v for v in (e.timetable_staged, e.timetable_desired) if v not in (None, e.timetable)),
        None,
    )
    return f"{runs}{'' if nxt is None else f'→{nxt}'}{'!' if e.timetable_error else ''}"


def cells(
    e: FleetEntry, now: float, alarm: BusAlarms | None = None, stop_names: Mapping[str, str] = {}
) -> tuple[str, ...]:
    """The texts of one bus's line, in COLUMNS order (drawn as they are: never markup)."""
    speed = "" if e.speed is None else f"{e.speed * 3.6:.0f}"
    doors = {None: "", True: "OPEN", False: "closed"}[e.doors_open]
    position = "" if e.lat is None or e.lon is None else f"{e.lat:.5f},{e.lon:.5f}"
    seen = "" if e.last_seen is None else f"{max(0.0, now - e.last_seen):.0f}s"
    sync = (
        f"v{e.reported_version}"
        if e.desired_version <= e.reported_version
        else f"v{e.reported_version}→v{e.desired_version}"
    )
    stop = stop_names.get(e.stop_id, e.stop_id) if e.stop_id else ""
    texts = (
        alarm.label if alarm else "",
        e.bus,
        "online" if e.online else "OFFLINE",
        timetable_cell(e),
        e.route_id or "",
        e.trip_id or "",
        stop or "",
        delay_text(e.delay_s),
        speed,
        doors,
        seen,
        "" if e.wifi_clients is None else str(e.wifi_clients),
        sync,
        str(e.records),
        position,
    )
    return tuple(clean(t) for t in texts)


class FleetTable(ScrollView, can_focus=True):
    """Live fleet table; arrows move, enter opens the bus."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "move(-1000000)", "First", show=False),
        Binding("end", "move(1000000)", "Last", show=False),
        Binding("enter", "select", "Open bus"),
    ]

    class Selected(Message):
        def __init__(self, bus: str) -> None:
            super().__init__()
            self.bus = bus

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.fleet: Mapping[str, FleetEntry] = {}
        self.alarms: Mapping[str, BusAlarms] = {}
        self.stop_names: Mapping[str, str] = {}
        self.view = View()
        self._rows: list[str] = []
        self.cursor_row = 0
        self.cursor_bus: str | None = None
        self._style = Style()
        self._now = 0.0
        self._content: dict[str, int] = {}
        self._measured: Mapping[str, FleetEntry] | None = None
        self._bus_width = 0  # the longest bus id and alarm label
        self._layout: tuple[tuple[int, dict[str, int]], Layout] | None = None

    # -- data -------------------------------------------------------------------------------
    def show(
        self,
        fleet: Mapping[str, FleetEntry],
        alarms: Mapping[str, BusAlarms],
        stop_names: Mapping[str, str] | None = None,
    ) -> None:
        self.fleet, self.alarms = fleet, alarms
        if stop_names is not None:
            self.stop_names = stop_names
        self._recompute()

    def set_view(self, view: View) -> None:
        self.view = view
        self._recompute()

    def _recompute(self) -> None:
        self._rows = rows(self.fleet, self.alarms, self.view, self.stop_names)
        if self.cursor_bus in self.fleet and self.cursor_bus in self._rows:
            self.cursor_row = self._rows.index(self.cursor_bus)
        else:
            self.cursor_row = min(self.cursor_row, max(0, len(self._rows) - 1))
            self.cursor_bus = self._rows[self.cursor_row] if self._rows else None
        if self.fleet is not self._measured:  # a new fleet: its longest ids, once
            self._measured = self.fleet
            self._bus_width = longest(self.fleet)
        self._content = {
            "bus": self._bus_width,
            "alarm": longest(a.label for a in self.alarms.values()),
        }
        self.virtual_size = Size(line_width(self.columns()), len(self._rows) + 1)
        self.refresh()

    def columns(self) -> Layout:
        """The columns that fit the table's width now, and their widths."""
        key = (self.scrollable_content_region.width or 200, self._content)
        if self._layout is None or self._layout[0] != key:
            self._layout = (key, layout(key[0], self._content))
        return self._layout[1]

    def on_resize(self) -> None:
        self._layout = None
        self.virtual_size = Size(line_width(self.columns()), len(self._rows) + 1)
        self.refresh()

    def header(self) -> list[str]:
        """The labels of the columns shown."""
        return [COLUMNS[i].label for i, _, _ in self.columns()]

    def row_keys(self) -> list[str]:
        """The buses shown, in order."""
        return list(self._rows)

    def cell(self, bus: str, key: str) -> str:
        """The text of one cell as shown now."""
        return cells(self.fleet[bus], self.clock(), self.alarms.get(bus), self.stop_names)[
            KEYS.index(key)
        ]

    # -- keys -------------------------------------------------------------------------------
    def action_move(self, delta: int) -> None:
        if not self._rows:
            return
        was, top = self.cursor_row, self.scroll_offset.y
        self.cursor_row = max(0, min(len(self._rows) - 1, self.cursor_row + delta))
        self.cursor_bus = self._rows[self.cursor_row]
        self._follow_cursor()
        if self.scroll_offset.y == top:  # no scrolling: only the two lines change
            self.refresh_lines(was + 1)  # + 1: the header line
            self.refresh_lines(self.cursor_row + 1)
        else:
            self.refresh()

    def action_page(self, pages: int) -> None:
        self.action_move(pages * max(1, self.size.height - 2))

    def action_select(self) -> None:
        if self.cursor_bus is not None:
            self.post_message(self.Selected(self.cursor_bus))

    def _follow_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = round(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    # -- drawing ----------------------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        # The widget's style walks the DOM: once per frame, not once per line.
        self._style = self.rich_style
        self._now = self.clock()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            texts = tuple(c.label for c in COLUMNS)
            strip = self._strip(texts, [HEADER] * len(COLUMNS), HEADER)
        else:
            index = scroll_y + y - 1
            if index >= len(self._rows):
                return Strip.blank(width, self._style)
            strip = self._bus_strip(self._rows[index], index == self.cursor_row)
        return strip.crop_extend(scroll_x, scroll_x + width, self._style)

    def _bus_strip(self, bus: str, cursor: bool) -> Strip:
        e = self.fleet[bus]
        alarm = self.alarms.get(bus)
        texts = cells(e, self._now, alarm, self.stop_names)
        base = self._style + OFFLINE if not e.online else self._style
        styles = [base] * len(COLUMNS)
        if alarm is not None and alarm.open:
            if alarm.unacked:
                styles[0] = base + ALARM_STYLES.get(alarm.severity, WARNING)
            else:
                styles[0] = base + ACKED
        if not e.online:
            styles[KEYS.index("status")] = base + Style(color="red", dim=False)
        if e.timetable_error:
            styles[KEYS.index("timetable")] = base + Style(bold=True, color="red")
        if e.doors_open and (e.speed or 0) > 1.5:
            styles[KEYS.index("doors")] = base + Style(bold=True, color="red")
        if cursor:
            styles = [s + CURSOR for s in styles]
        return self._strip(texts, styles, base + CURSOR if cursor else base)

    def _strip(self, texts: tuple[str, ...], styles: list[Style], gap: Style) -> Strip:
        """One line of the columns shown; neighbouring cells of one style share a segment."""
        segments: list[Segment] = []
        run: list[str] = []
        cols = self.columns()
        current = styles[cols[0][0]] if cols else gap
        for i, w, cut_left in cols:
            style = styles[i]
            if style != current:
                segments.append(Segment("".join(run), current))
                run, current = [], style
            run.append(fit(texts[i], w, cut_left))
            if gap != current:
                segments.append(Segment("".join(run), current))
                run, current = [], gap
            run.append(" ")
        segments.append(Segment("".join(run), current))
        return Strip(segments, line_width(cols))
