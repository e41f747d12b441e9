"""The vehicle as bus-FMS tells it: a pure snapshot updated by decoded messages, plus events.

`apply(state, msg)` returns the new state and what changed that someone may act on (a door
opened, a stop was requested, a fault appeared). A 1 Hz snapshot is simply the state at that
second: the agent samples it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Literal

from protocols.j1939.decode import (
    PGN_AMB,
    PGN_CCVS1,
    PGN_DC1,
    PGN_DC2,
    PGN_DD1,
    PGN_EEC1,
    PGN_ET1,
    PGN_FMS1,
    PGN_HOURS,
    PGN_LFC1,
    PGN_LFE1,
    PGN_VDHR,
    PGN_VEP1,
    Dm1,
    Dtc,
    Signals,
    Vin,
)

DOORS = 10
# Tell-tale numbers (block*15 + position) used for a bus (FMS-Standard, secondary sources).
TT_RAMP = 6
TT_PARKING_BRAKE = 7
TT_STOP_REQUEST = 38
TT_KNEELING = 44

EventKind = Literal[
    "doors_opened",
    "doors_closed",
    "door_opened",
    "door_closed",
    "stop_requested",
    "stop_request_cleared",
    "kneeling_started",
    "kneeling_ended",
    "ramp_out",
    "ramp_in",
    "parking_brake_set",
    "parking_brake_released",
    "dtc_new",
    "dtc_cleared",
]


@dataclass(frozen=True, slots=True)
class VehicleEvent:
    """Something that changed: `door` is 1..10 for door events, `dtc`/`sa` for DTC events."""

    t: float
    kind: EventKind
    door: int | None = None
    dtc: Dtc | None = None
    sa: int | None = None


@dataclass(frozen=True, slots=True)
class VehicleState:
    """Latest known value of each quantity; None while unknown or sent as n/a or error."""

    speed_kmh: float | None = None
    engine_rpm: float | None = None
    coolant_c: float | None = None
    fuel_pct: float | None = None
    odometer_m: float | None = None
    fuel_rate_lph: float | None = None
    battery_v: float | None = None
    ambient_c: float | None = None
    doors_open: bool | None = None  # DC1 position of doors, or any door open in DC2
    door_open: tuple[bool | None, ...] = (None,) * DOORS  # doors 1..10 from DC2
    stop_request: bool | None = None
    kneeling: bool | None = None
    ramp_out: bool | None = None
    parking_brake: bool | None = None
    vin: str | None = None
    dtcs: tuple[Dtc, ...] = ()  # active DTCs of all ECUs
    updated: float = 0.0  # t of the last change
    # Beyond the agreed fields:
    engine_hours: float | None = None
    fuel_used_l: float | None = None
    dtcs_by_sa: tuple[tuple[int, tuple[Dtc, ...]], ...] = ()  # (source address, its DTCs)


_BOOL_EVENTS: dict[str, tuple[EventKind, EventKind]] = {
    "doors_open": ("doors_opened", "doors_closed"),
    "stop_request": ("stop_requested", "stop_request_cleared"),
    "kneeling": ("kneeling_started", "kneeling_ended"),
    "ramp_out": ("ramp_out", "ramp_in"),
    "parking_brake": ("parking_brake_set", "parking_brake_released"),
}


def _state2(v: float | int | None) -> bool | None:
    return None if v is None else v == 1


def _door_position(v: float | int | None) -> bool | None:
    # SPN 1821: 0 at least one door open, 1 closing last door (still open), 2 all closed.
    if v is None or v > 2:
        return None
    return v != 2


def _number(v: float | int | None) -> float | int | None:
    return v


_Conv = Callable[[float | int | None], float | int | bool | None]

# PGN -> (state field, SPN, converter) for messages that map field by field.
_SIMPLE: dict[int, tuple[tuple[str, int, _Conv], ...]] = {
    PGN_CCVS1: (("speed_kmh", 84, _number), ("parking_brake", 70, _state2)),
    PGN_EEC1: (("engine_rpm", 190, _number),),
    PGN_ET1: (("coolant_c", 110, _number),),
    PGN_DD1: (("fuel_pct", 96, _number),),
    PGN_VDHR: (("odometer_m", 917, _number),),
    PGN_LFE1: (("fuel_rate_lph", 183, _number),),
    PGN_VEP1: (("battery_v", 168, _number),),
    PGN_AMB: (("ambient_c", 171, _number),),
    PGN_HOURS: (("engine_hours", 247, _number),),
    PGN_LFC1: (("fuel_used_l", 250, _number),),
    PGN_DC1: (("doors_open", 1821, _door_position), ("ramp_out", 1820, _state2)),
}

_TELLTALES: tuple[tuple[str, int], ...] = (
    ("ramp_out", TT_RAMP),
    ("parking_brake", TT_PARKING_BRAKE),
    ("stop_request", TT_STOP_REQUEST),
    ("kneeling", TT_KNEELING),
)


def signal_changes(msg: Signals) -> dict[str, object]:
    """State field -> new value that `msg` carries (the same for the same PGN and bytes)."""
    changes: dict[str, object] = {}
    simple = _SIMPLE.get(msg.pgn)
    if simple is not None:
        for name, spn, conv in simple:
            changes[name] = conv(msg.spn.get(spn))
    elif msg.pgn == PGN_DC2:
        doors = tuple(_state2(msg.spn.get(3413 + 3 * i)) for i in range(DOORS))
        changes["door_open"] = doors
        known = [d for d in doors if d is not None]
        changes["doors_open"] = any(known) if known else None
    elif msg.pgn == PGN_FMS1 and msg.telltales:
        # One frame carries one block of 15; tell-tales of other blocks stay as they were.
        block = (next(iter(msg.telltales)) - 1) // 15
        for name, number in _TELLTALES:
            if (number - 1) // 15 == block:
                st = msg.telltales.get(number)
                changes[name] = None if st is None else st != 0
    return changes


def _is_event(old: object, new: object) -> bool:
    # Unknown -> off is how every bus starts: not an event. Unknown -> on is.
    return new is not None and new != old and not (old is None and new is False)


def _events(t: float, old: VehicleState, changes: dict[str, object]) -> list[VehicleEvent]:
    events: list[VehicleEvent] = []
    for name, kinds in _BOOL_EVENTS.items():
        if name in changes:
            prev, new = getattr(old, name), changes[name]
            if _is_event(prev, new):
                events.append(VehicleEvent(t, kinds[0] if new else kinds[1]))
    doors = changes.get("door_open")
    if isinstance(doors, tuple):
        for i, (prev, new) in enumerate(zip(old.door_open, doors, strict=True)):
            if _is_event(prev, new):
                events.append(VehicleEvent(t, "door_opened" if new else "door_closed", door=i + 1))
    return events


def _apply_dm1(state: VehicleState, msg: Dm1) -> tuple[dict[str, object], list[VehicleEvent]]:
    by_sa = dict(state.dtcs_by_sa)
    old = {(d.spn, d.fmi) for d in by_sa.get(msg.sa, ())}
    new = {(d.spn, d.fmi) for d in msg.dtcs}
    events = [
        VehicleEvent(msg.t, "dtc_new", dtc=d, sa=msg.sa)
        for d in msg.dtcs
        if (d.spn, d.fmi) not in old
    ]
    events += [
        VehicleEvent(msg.t, "dtc_cleared", dtc=d, sa=msg.sa)
        for d in by_sa.get(msg.sa, ())
        if (d.spn, d.fmi) not in new
    ]
    if msg.dtcs:
        by_sa[msg.sa] = msg.dtcs
    else:
        by_sa.pop(msg.sa, None)
    pairs = tuple(sorted(by_sa.items()))
    return {"dtcs_by_sa": pairs, "dtcs": tuple(d for _, ds in pairs for d in ds)}, events


def apply(state: VehicleState, msg: Signals | Dm1 | Vin) -> tuple[VehicleState, list[VehicleEvent]]:
    """The state after `msg` and the events it caused; `state` itself is not changed."""
    if isinstance(msg, Signals):
        return apply_changes(state, msg.t, signal_changes(msg))
    if isinstance(msg, Dm1):
        if msg.dtcs == dict(state.dtcs_by_sa).get(msg.sa, ()):
            return state, []  # the ECU's repeat (each 1 s, by TP.BAM): nothing new, no event
        changes, events = _apply_dm1(state, msg)
    else:
        changes, events = {"vin": msg.text}, []
    return _replaced(state, msg.t, changes), events


def apply_changes(
    state: VehicleState, t: float, changes: dict[str, object]
) -> tuple[VehicleState, list[VehicleEvent]]:
    """`apply` for a Signals message whose `signal_changes` are `changes`, at time `t`."""
    return _replaced(state, t, changes), _events(t, state, changes)


def _replaced(state: VehicleState, t: float, changes: dict[str, object]) -> VehicleState:
    changed = {k: v for k, v in changes.items() if getattr(state, k) != v}
    if not changed:
        return state
    return replace(state, updated=t, **changed)  # type: ignore[arg-type]


def to_dict(state: VehicleState) -> dict[str, object]:
    """A JSON-ready view of the state (DTCs as objects, internal per-ECU map left out)."""
    out: dict[str, object] = {
        f.name: getattr(state, f.name)
        for f in fields(state)
        if f.name not in ("door_open", "dtcs", "dtcs_by_sa")
    }
    out["door_open"] = list(state.door_open)
    out["dtcs"] = [{"spn": d.spn, "fmi": d.fmi, "occurrence": d.occurrence} for d in state.dtcs]
    return out
