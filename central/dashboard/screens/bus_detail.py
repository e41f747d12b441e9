"""One bus: vehicle data with units, health, assignment, playlist and messages, its
timetable (desired and from when, running, staged, refused), recent events, command history
(with each command's answer) and its alarms.

Central answers a `detail` request; the screen asks again every REFRESH_S while it is shown,
so a command's acknowledgement appears by itself.
"""

from __future__ import annotations

import json
import time
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from central.dashboard.screens.base import DispatchScreen
from central.dashboard.text import clock, line, lines, plain
from central.fleet.health import figure_lines, packed
from protocols.requests import Detail, DispatchReply
from protocols.schemas import FleetEntry, Scalar

REFRESH_S = 2.0
# vehicle.* results: (label, unit, scale)
VEHICLE = (
    ("speed_kmh", "speed (wheel)", "km/h", 1.0),
    ("speed", "speed (GPS)", "km/h", 3.6),
    ("rpm", "engine", "rpm", 1.0),
    ("coolant_c", "coolant", "°C", 1.0),
    ("fuel_pct", "fuel", "%", 1.0),
    ("odometer_m", "odometer", "km", 0.001),
    ("doors_open", "doors open", "bool", 1.0),
    ("lat", "latitude", "°", 1.0),
    ("lon", "longitude", "°", 1.0),
    ("hdop", "HDOP", "", 1.0),
    ("sats", "satellites", "", 1.0),
)


def event_text(data: Scalar) -> str:
    """An event's data (JSON text) as a short line for people."""
    if not isinstance(data, str):
        return ""
    try:
        value = json.loads(data)
    except ValueError:
        return data[:80]
    if not isinstance(value, dict):
        return data[:80]
    return " ".join(f"{k}={v}" for k, v in value.items())[:120]


def _value(v: Scalar, unit: str, scale: float) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool) or unit == "bool":
        return "yes" if v else "no"
    if isinstance(v, int | float):
        text = f"{v * scale:.5f}" if unit == "°" else f"{v * scale:,.1f}".rstrip("0").rstrip(".")
        return f"{text} {unit}".strip()
    return str(v)


def timetable_text(e: FleetEntry | None) -> Text:
    """The bus's timetable from its fleet entry: what central wants it to run and from when,
    what it runs and holds staged, and why it refused the last package (the bus's words)."""
    out = [plain("Timetable", "bold")]
    if e is None:
        return lines([*out, plain("no news from this bus yet")])
    if e.timetable_desired is None:
        desired = "none published"
    else:
        when = e.timetable_valid_from
        since = "at once" if when is None else f"from {clock(when, '%Y-%m-%d %H:%M')}"
        desired = f"v{e.timetable_desired} {since}"
    source = {"local": "local bootstrap feed", "central": "from central"}.get(
        e.timetable_source, e.timetable_source
    )
    running = "—" if e.timetable is None else f"v{e.timetable}"
    out.append(plain(f"{'desired':<8} {desired}"))
    out.append(plain(f"{'runs':<8} {running}{f' ({source})' if source else ''}"))
    staged = "—" if e.timetable_staged is None else f"v{e.timetable_staged}"
    out.append(plain(f"{'staged':<8} {staged}"))
    if e.timetable_error:
        out.append(line(("refused  ", "red bold"), (e.timetable_error, "red")))
    return lines(out)


def machine_text(r: dict[str, Scalar]) -> Text:
    """The bus's newest health report (the detail's `health.*` results), packed to fit 80
    columns; the bus's own words (version, operator) as literal text."""
    data = {k[7:]: v for k, v in r.items() if k.startswith("health.")}
    t, now = data.get("t"), r.get("now")
    when = t if isinstance(t, int | float) and not isinstance(t, bool) else None
    at = now if isinstance(now, int | float) and not isinstance(now, bool) else time.time()
    rows = [plain("Machine", "bold")]
    rows += [plain(text) for text in packed(figure_lines(data, when, at))]
    return lines(rows)


class BusDetailScreen(DispatchScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "reload", "Refresh"),
        Binding("c", "command", "Command"),
        Binding("t", "assign", "Assign"),
        Binding("p", "playlist", "Playlist"),
        Binding("k", "ack", "Acknowledge"),
        Binding("m", "map", "On map"),
        Binding("l", "logs", "Bus log"),
    ]

    def __init__(self, bus: str) -> None:
        super().__init__()
        self.bus = bus
        self.detail: DispatchReply | None = None

    def body(self) -> ComposeResult:
        yield Static(plain(f"bus {self.bus}"), id="detail-title")
        with Horizontal(id="detail-top"):
            yield Static("loading…", id="vehicle", classes="box")
            yield Static("", id="health", classes="box")
            yield Static("", id="assignment", classes="box")
            yield Static("", id="timetable", classes="box")
        yield Static("", id="machine", classes="box")  # its health report (issue 16)
        yield Static("Commands (c: send one)", classes="section")
        yield DataTable(id="commands", cursor_type="row")
        yield Static("Recent events", classes="section")
        yield DataTable(id="events", cursor_type="row")

    def on_mount(self) -> None:
        super().on_mount()
        commands = self.query_one("#commands", DataTable)
        commands.add_columns("sent", "command", "arguments", "status", "answer", "answered")
        events = self.query_one("#events", DataTable)
        events.add_columns("time", "event", "sev", "data", "backfill")
        self.action_reload()
        self.set_interval(REFRESH_S, self.action_reload)

    def selected_bus(self) -> str | None:
        return self.bus

    def action_reload(self) -> None:
        if self.is_current:
            self._load()

    # exit_on_error off: a screen closing while its answer is on the way is no crash
    @work(group="detail", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        reply = await self.dashboard.ask(Detail(bus=self.bus))
        if reply.ok:
            self.detail = reply
            self.show_detail(reply)
        else:
            self.query_one("#vehicle", Static).update(plain(f"cannot load: {reply.error}"))

    def on_state(self) -> None:
        self.show_entry()

    def show_entry(self) -> None:
        e = self.dashboard.fleet.get(self.bus)
        alarms = [
            a for a in self.dashboard.alarms.values() if a.bus == self.bus and a.state != "closed"
        ]
        parts: list[Text] = [plain(self.bus, "bold")]
        if e is not None:
            ago = None if e.last_seen is None else self.dashboard.clock() - e.last_seen
            seen = "" if ago is None or not 0 <= ago < 1e9 else f", seen {ago:.0f} s ago"
            status = plain("online") if e.online else plain("OFFLINE", "red")
            parts.append(line(status, seen))
        parts.append(plain(f"open alarms: {', '.join(a.kind for a in alarms) or 'none'}"))
        self.query_one("#detail-title", Static).update(Text(" · ", end="").join(parts))
        self.query_one("#timetable", Static).update(timetable_text(e))

    def show_detail(self, reply: DispatchReply) -> None:
        r = reply.result
        vehicle = [plain("Vehicle", "bold")]
        for key, label, unit, scale in VEHICLE:
            vehicle.append(plain(f"{label:<14} {_value(r.get(f'vehicle.{key}'), unit, scale)}"))
        vehicle.append(plain(f"{'sample':<14} {clock(r.get('vehicle.t'))}"))
        self.query_one("#vehicle", Static).update(lines(vehicle))
        health = [plain("Health", "bold")]
        health.append(
            plain(f"desired v{r.get('desired_version', 0)} · runs v{r.get('reported_version', 0)}")
        )
        if r.get("reported_error"):
            health.append(plain(f"refused: {r['reported_error']}", "red"))
        for key, value in r.items():
            if key.startswith("counter."):
                health.append(plain(f"{key[8:]:<18} {value}"))
        self.query_one("#health", Static).update(lines(health))
        self.query_one("#machine", Static).update(machine_text(r))
        a = [plain("Assignment", "bold")]
        for key, label in (("route_id", "route"), ("trip_id", "trip"), ("block_id", "block")):
            a.append(plain(f"{label:<9} {r.get(key) or '—'}"))
        a.append(plain(f"{'next stop':<9} {r.get('journey_stop') or '—'}"))
        delay = r.get("journey_delay_s")
        a.append(plain(f"{'delay':<9} {'—' if delay is None else f'{delay} s'}"))
        a.append(
            plain(
                f"{'playlist':<9} {r.get('playlist') or '—'}"
                f" (runs {r.get('reported_playlist') or '—'})"
            )
        )
        messages = reply.tables.get("messages", [])
        a.append(line(("Messages", "bold"), f" ({len(messages)})"))
        a += [plain(f"· {m.get('text')}"[:60]) for m in messages[:5]]
        self.query_one("#assignment", Static).update(lines(a))
        commands = self.query_one("#commands", DataTable)
        commands.clear()
        for c in reply.tables.get("commands", []):
            commands.add_row(
                plain(clock(c.get("sent"))),
                plain(c.get("name")),
                plain(str(c.get("args"))[:40]),
                plain(c.get("status")),
                plain(c.get("reason") or ""),
                plain(clock(c.get("answered"))),
            )
        events = self.query_one("#events", DataTable)
        events.clear()
        for ev in reply.tables.get("events", []):
            events.add_row(
                plain(clock(ev.get("t"))),
                plain(ev.get("kind")),
                plain(ev.get("severity")),
                plain(event_text(ev.get("data"))),
                plain("yes" if ev.get("backfill") else ""),
            )

    def action_command(self) -> None:
        self.bus_action("command", self.bus)

    def action_assign(self) -> None:
        self.bus_action("assign", self.bus)

    def action_playlist(self) -> None:
        self.bus_action("playlist", self.bus)

    def action_ack(self) -> None:
        self.bus_action("ack", self.bus)

    def action_map(self) -> None:
        self.bus_action("map", self.bus)

    def action_logs(self) -> None:
        self.bus_action("logs", self.bus)
