"""Each bus's journey status at central: where on its trip it is, how late it runs.

Two sources, the newer wins:
- the `journey` of the bus's reported state (a `JourneyStatus`, republished by the bus at stop
  granularity; retained, so known right after a restart of central);
- the bus's latest journey event (`arrived`, `departed`, `passed`, `trip_finished` with data
  `trip`, `route`, `index`, `stop`, `delay_s`, as onboard/journey/tracker.py records them). The stop
  after a departure and stop sequences come from the imported timetable.

Events are read incrementally: per bus only those after the last one looked at, so a bus's
long history (proof-of-play and the rest) is scanned once, not on every request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from central.store import gtfs as gtfs_db
from central.store import queries as query_db
from central.store.db import CentralStore
from protocols import codec
from protocols.errors import CodecError
from protocols.schemas import MAX_DELAY_S, JourneyStatus, ReportedState, Scalar

__all__ = ["JOURNEY_EVENTS", "JourneyIndex", "from_event"]

JOURNEY_EVENTS = ("arrived", "departed", "passed", "trip_finished")


def _int(value: Scalar, bound: int) -> int | None:
    """An event's number as an int, None if it is none or beyond +-`bound` (an int32 field
    of GTFS-RT, or a delay of 2^40 s, must not fail the feed for every bus)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not -bound <= value <= bound:  # also NaN
        return None
    return round(value)


def from_event(
    store: CentralStore, kind: str, t: float, data: dict[str, Scalar]
) -> JourneyStatus | None:
    """The journey status a journey event implies; None if it does not say enough."""
    trip, route = data.get("trip"), data.get("route")
    if not isinstance(trip, str) or not trip:
        return None
    route_id = route if isinstance(route, str) and route else None
    delay, index = _int(data.get("delay_s"), MAX_DELAY_S), _int(data.get("index"), 2**31 - 2)
    if kind == "trip_finished":
        return JourneyStatus(t=t, trip_id=trip, route_id=route_id, delay_s=delay, finished=True)
    if index is None or index < 0:
        return JourneyStatus(t=t, trip_id=trip, route_id=route_id, delay_s=delay)
    at_stop = kind == "arrived"
    stop = gtfs_db.stop_at(store, trip, index if at_stop else index + 1)
    stop_id = stop[0] if stop else None
    if at_stop and stop_id is None and isinstance(data.get("stop"), str):
        stop_id = str(data["stop"])
    return JourneyStatus(
        t=t,
        trip_id=trip,
        route_id=route_id,
        stop_id=stop_id,
        stop_sequence=stop[1] if stop else None,
        at_stop=at_stop and stop_id is not None,
        delay_s=delay,
    )


class JourneyIndex:
    """The journey status of buses, from the store; keeps its place in each bus's events."""

    def __init__(self, store: CentralStore) -> None:
        self.store = store
        self._from_events: dict[str, tuple[int, JourneyStatus | None]] = {}

    def status(self, buses: Iterable[str], now: float | None = None) -> dict[str, JourneyStatus]:
        """The newest known journey status of each of `buses` that has one.

        "Newest" by the bus's clock, but no later than central's `now`: a status dated ten
        years ahead must not outrank every later one.
        """
        now = time.time() if now is None else now
        wanted = set(buses)
        out: dict[str, JourneyStatus] = {}
        for bus, body in self.store.all_reported():
            if bus not in wanted:
                continue
            try:
                journey = codec.decode(ReportedState, body).journey
            except CodecError:
                continue
            if journey is not None:
                out[bus] = journey
        for bus in wanted:
            event = self._event_status(bus)
            if event is not None and (bus not in out or min(event.t, now) > min(out[bus].t, now)):
                out[bus] = event
        return out

    def _event_status(self, bus: str) -> JourneyStatus | None:
        seen, status = self._from_events.get(bus, (-1, None))
        top = query_db.latest_event_seq(self.store, bus)
        if top is None or top <= seen:
            return status
        row = query_db.latest_event_of(self.store, bus, seen, JOURNEY_EVENTS)
        if row is not None:
            try:
                data = codec.decode_json(row[2])
            except CodecError:
                data = None
            if isinstance(data, dict):
                status = from_event(self.store, row[1], row[0], data) or status
        self._from_events[bus] = (top, status)
        return status
