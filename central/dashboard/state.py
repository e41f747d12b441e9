"""The dashboard's fleet state: a pure `apply(state, event)`, nothing else."""

from __future__ import annotations

from collections.abc import Mapping

from protocols.schemas import CentralStats, FleetEntry

FleetState = Mapping[str, FleetEntry]


def apply(state: FleetState, entries: list[FleetEntry]) -> dict[str, FleetEntry]:
    """The fleet after a batch of entries; an older entry never replaces a newer one."""
    new = dict(state)
    for e in entries:
        old = new.get(e.bus)
        if old is None or (e.last_seen or 0) >= (old.last_seen or 0) or e.online != old.online:
            new[e.bus] = e
    return new


def summary(state: FleetState, stats: CentralStats | None) -> str:
    online = sum(1 for e in state.values() if e.online)
    text = f"{len(state)} buses, {online} online"
    if stats is not None:
        c = stats.counters
        text += f" · {c.get('records', 0)} records stored · {c.get('rejected', 0)} rejected"
    return text
