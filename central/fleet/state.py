"""Fleet state at central: pure functions from (entry, event) to the new entry.

Presence carries a session number that grows with each connection of a bus: a death (last
will) or birth with a session older than the newest one seen is stale and ignored, so a
will that the broker delivers late can never mark a reconnected bus offline.

Times from a bus are judged against central's clock: a record ten years ahead is stored (it
is valid per schema) but never becomes the live position, which every later record would
otherwise have to beat (`not_ahead`); a live position that is that far ahead already (stored
before this rule) is replaced by the next one that is not. A time from long ago
(`plausible_time` says no) is counted by the ingest but may still be the live position: any
later record replaces it, and a GPS week rollover or a replayed capture is no reason to show
no position at all.
"""

from __future__ import annotations

import msgspec

from protocols.schemas import (
    MAX_DELAY_S,
    DesiredState,
    FleetEntry,
    Presence,
    ReportedState,
    TelemetryBatch,
)

MAX_AHEAD_S = 300.0  # a bus's clock this far ahead of central's is wrong, not early
MAX_AGE_S = 30 * 86_400.0  # older than any outage a bus's outbox is kept through


def plausible_time(t: float, now: float) -> bool:
    """Whether a bus's time `t` can be true, by central's clock `now`."""
    return now - MAX_AGE_S <= t <= now + MAX_AHEAD_S


def known_delay(delay_s: int | None) -> int | None:
    """A journey's delay as central shows it: one beyond a day is a wrong clock or timetable
    on the bus, not a delay, and is shown as not known."""
    return delay_s if delay_s is not None and abs(delay_s) <= MAX_DELAY_S else None


def not_ahead(t: float, now: float) -> bool:
    """Whether a bus's time `t` may move live state: not far ahead of central's clock."""
    return t <= now + MAX_AHEAD_S


class BusState(msgspec.Struct, frozen=True, kw_only=True):
    entry: FleetEntry
    session: int = 0


def new_bus(bus: str) -> BusState:
    return BusState(entry=FleetEntry(bus=bus, online=False))


def on_presence(state: BusState, p: Presence, now: float) -> BusState | None:
    """Apply a birth or death; None if it is stale (an older session than one already seen)."""
    if p.session < state.session:
        return None
    entry = msgspec.structs.replace(
        state.entry, online=p.online, last_seen=now if p.online else state.entry.last_seen
    )
    return BusState(entry=entry, session=p.session)


def on_telemetry(state: BusState, batch: TelemetryBatch, new_records: int, now: float) -> BusState:
    """Apply a telemetry batch: the latest position and vehicle data, last seen, record count.

    Backfilled batches update the history but never move the live position backwards.
    """
    entry = state.entry
    updates: dict[str, object] = {
        "online": True,
        "last_seen": now,
        "records": entry.records + new_records,
    }
    live = (r for r in batch.records if not_ahead(r.t, now))
    latest = max(live, key=lambda r: r.t, default=None)
    current = entry.t if entry.t is not None and not_ahead(entry.t, now) else None
    if latest is not None and (current is None or latest.t >= current):
        if latest.pos is not None:
            updates.update(
                t=latest.t, lat=latest.pos.lat, lon=latest.pos.lon, speed=latest.pos.speed
            )
        if latest.veh is not None and latest.veh.doors_open is not None:
            updates["doors_open"] = latest.veh.doors_open
    return msgspec.structs.replace(state, entry=msgspec.structs.replace(entry, **updates))


def on_reported(state: BusState, r: ReportedState, now: float) -> BusState:
    a = r.assignment
    tt = r.timetable
    entry = msgspec.structs.replace(
        state.entry,
        reported_version=r.version,
        last_seen=now,
        route_id=a.route_id if a else None,
        trip_id=a.trip_id if a else None,
        stop_id=j.stop_id if (j := r.journey) and not j.finished else None,
        delay_s=known_delay(j.delay_s) if j and not j.finished else None,
        timetable=tt.running if tt else None,
        timetable_staged=tt.staged if tt else None,
        timetable_source=tt.source if tt else "",
        timetable_error=tt.error if tt else None,
    )
    return msgspec.structs.replace(state, entry=entry)


def on_portal_stats(state: BusState, clients: object) -> BusState:
    """The bus's Wi-Fi statistics: how many passengers are on it now."""
    if isinstance(clients, bool) or not isinstance(clients, int):
        return state
    return msgspec.structs.replace(
        state, entry=msgspec.structs.replace(state.entry, wifi_clients=clients)
    )


def on_desired(state: BusState, desired: DesiredState) -> BusState:
    tt = desired.timetable
    entry = msgspec.structs.replace(
        state.entry,
        desired_version=desired.version,
        timetable_desired=tt.version if tt else None,
        timetable_valid_from=tt.valid_from if tt else None,
    )
    return msgspec.structs.replace(state, entry=entry)


def on_tick(state: BusState, now: float, offline_after_s: float) -> BusState | None:
    """Mark a silent bus offline (its link may be dead without a will yet); None if unchanged."""
    e = state.entry
    if e.online and e.last_seen is not None and now - e.last_seen > offline_after_s:
        return msgspec.structs.replace(state, entry=msgspec.structs.replace(e, online=False))
    return None


def out_of_sync(entry: FleetEntry) -> bool:
    return entry.desired_version != entry.reported_version
