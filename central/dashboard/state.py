"""The dashboard's state: pure `apply` functions and views of it, nothing else.

Fleet entries and alarms arrive from central's retained topics; the dashboard keeps the
newest of each and derives what its screens show: one alarm summary per bus, the fleet table's
rows filtered and sorted, the banner's line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from protocols.schemas import Alarm, CentralStats, FleetEntry

FleetState = Mapping[str, FleetEntry]
AlarmState = Mapping[str, Alarm]

OPEN = ("active", "acked", "cleared")  # not closed: still on the dashboards' lists
UNACKED = ("active", "cleared")  # someone has to acknowledge these
SEVERITY = {4: "EMERGENCY", 3: "ALARM", 2: "warning", 1: "notice", 0: "info"}


def apply(state: FleetState, entries: list[FleetEntry]) -> dict[str, FleetEntry]:
    """The fleet after a batch of entries; an older entry never replaces a newer one."""
    new = dict(state)
    for e in entries:
        old = new.get(e.bus)
        if old is None or (e.last_seen or 0) >= (old.last_seen or 0) or e.online != old.online:
            new[e.bus] = e
    return new


def apply_alarms(state: AlarmState, changes: Mapping[str, Alarm | None]) -> dict[str, Alarm]:
    """The alarms after a batch of changes (None: central removed it); never go back in time."""
    new = dict(state)
    for alarm_id, alarm in changes.items():
        if alarm is None:
            new.pop(alarm_id, None)
            continue
        old = new.get(alarm_id)
        if old is None or alarm.t >= old.t:
            new[alarm_id] = alarm
    return new


@dataclass(frozen=True, slots=True)
class BusAlarms:
    """One bus's open alarms, for the fleet table's column."""

    severity: int  # the highest, of those still to acknowledge if any
    unacked: int
    open: int
    kind: str  # of the most severe

    @property
    def label(self) -> str:
        if not self.open:
            return ""
        mark = "!" if self.unacked else "✓"
        more = f" +{self.open - 1}" if self.open > 1 else ""
        return f"{mark}{self.kind}{more}"


def per_bus(alarms: AlarmState) -> dict[str, BusAlarms]:
    out: dict[str, BusAlarms] = {}
    for a in alarms.values():
        if a.state not in OPEN:
            continue
        have = out.get(a.bus)
        unacked = a.state in UNACKED
        if have is None:
            out[a.bus] = BusAlarms(a.severity, int(unacked), 1, a.kind)
            continue
        count_u = have.unacked + int(unacked)
        better = (unacked, a.severity) > (have.unacked > 0, have.severity)
        out[a.bus] = BusAlarms(
            a.severity if better else have.severity,
            count_u,
            have.open + 1,
            a.kind if better else have.kind,
        )
    return out


def alarm_order(a: Alarm) -> tuple[int, int, float]:
    """Still to acknowledge first, then the most severe, then the newest."""
    return (0 if a.state in UNACKED else 1 if a.state == "acked" else 2, -a.severity, -a.raised_t)


def open_alarms(alarms: AlarmState, *, include_closed: bool = False) -> list[Alarm]:
    shown = [a for a in alarms.values() if include_closed or a.state in OPEN]
    return sorted(shown, key=alarm_order)


def banner(alarms: AlarmState) -> tuple[str, int]:
    """The banner's text and the highest severity still to acknowledge (-1: none)."""
    todo = sorted((a for a in alarms.values() if a.state in UNACKED), key=alarm_order)
    if not todo:
        acked = sum(1 for a in alarms.values() if a.state == "acked")
        return (f"no alarm to acknowledge · {acked} acknowledged and active", -1)
    head = " · ".join(f"{SEVERITY.get(a.severity, a.severity)} {a.bus} {a.kind}" for a in todo[:4])
    more = f" · and {len(todo) - 4} more" if len(todo) > 4 else ""
    return (f"{len(todo)} to acknowledge (a: alarms): {head}{more}", todo[0].severity)


def summary(state: FleetState, stats: CentralStats | None) -> str:
    online = sum(1 for e in state.values() if e.online)
    text = f"{len(state)} buses, {online} online"
    if stats is not None:
        c = stats.counters
        text += f" · {c.get('records', 0)} records stored · {c.get('rejected', 0)} rejected"
    return text


# -- the fleet table's rows ------------------------------------------------------------------


def _none_last(value: Any) -> tuple[int, Any]:
    return (1, 0) if value is None else (0, value)


SORTS: dict[str, Callable[[FleetEntry, BusAlarms | None], Any]] = {
    "bus": lambda e, a: e.bus,
    "alarm": lambda e, a: (-(a.unacked > 0), -a.severity) if a and a.open else (1, 0),
    "status": lambda e, a: e.online,
    "route": lambda e, a: _none_last(e.route_id),
    "delay": lambda e, a: _none_last(None if e.delay_s is None else -e.delay_s),
    "speed": lambda e, a: _none_last(None if e.speed is None else -e.speed),
    "seen": lambda e, a: _none_last(None if e.last_seen is None else -e.last_seen),
    "wifi": lambda e, a: _none_last(None if e.wifi_clients is None else -e.wifi_clients),
}


@dataclass(frozen=True, slots=True)
class View:
    """How the fleet table shows the fleet: a search, a problems-only filter, a sort."""

    search: str = ""
    problems_only: bool = False
    sort: str = "bus"
    reverse: bool = False


def matches(e: FleetEntry, words: Iterable[str], stop_names: Mapping[str, str]) -> bool:
    hay = " ".join(
        x or ""
        for x in (e.bus, e.route_id, e.trip_id, e.stop_id, stop_names.get(e.stop_id or "", ""))
    ).lower()
    return all(w in hay for w in words)


def rows(
    fleet: FleetState,
    alarms: Mapping[str, BusAlarms],
    view: View,
    stop_names: Mapping[str, str] | None = None,
) -> list[str]:
    """The bus ids the table shows, in order."""
    words = view.search.lower().split()
    names = stop_names or {}
    chosen = [
        e
        for e in fleet.values()
        if (not words or matches(e, words, names))
        and (not view.problems_only or not e.online or (e.bus in alarms and alarms[e.bus].open))
    ]
    key = SORTS.get(view.sort, SORTS["bus"])
    chosen.sort(key=lambda e: e.bus, reverse=view.reverse and key is SORTS["bus"])
    if key is not SORTS["bus"]:  # ties keep the bus order
        chosen.sort(key=lambda e: key(e, alarms.get(e.bus)), reverse=view.reverse)
    return [e.bus for e in chosen]
