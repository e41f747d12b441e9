"""GTFS-Realtime from fleet state: VehiclePositions and TripUpdates, built with the official
bindings (gtfs-realtime-bindings). Pure: every input, the clock included, is an argument.

Inputs: central's fleet entries (position, speed, the assignment the bus reports) and each
bus's `JourneyStatus` (the trip it really drives, its next stop, its delay). Where they
come from is `central/http/server.py`'s business.

What goes out, and why:
- Only buses that are online and have a position. A bus that went offline keeps its last
  position in fleet state, but a passenger app must not show a ghost.
- The trip is the journey's (a route assignment is matched to a trip on board), else the
  assigned trip. Route, direction and start time are filled from the imported timetable when
  `trips` knows the trip.
- TripUpdates carry a StopTimeUpdate for every stop still ahead, in stop_sequence order, with
  the predicted arrival (time and uncertainty) and departure from central's model
  (`predictions`: central/predictions/live.py, the predictor of protocols/predict.py; times
  never go backwards from one stop to the next), and as the trip-level delay the bus's own.
  Without predictions (no timetable for the trip) they carry what is known: the delay at the
  next stop (GTFS-RT propagates it to the later stops). A bus with a trip but no delay
  yet gets its next stop marked NO_DATA; one with neither gets no TripUpdate. A finished trip
  gets none either. Stops a diversion skips are SKIPPED, in their place in the order.
- One bus never fails the feed for everyone: each entity is built on its own, and one that
  cannot be (a time or a delay that protobuf refuses) is left out, counted
  (`gtfs_rt_skipped` in `counters`) and logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped]  # no stubs installed
from google.transit import gtfs_realtime_pb2 as rt

from central.fleet.state import known_delay
from protocols.predict import StopPrediction
from protocols.schemas import FleetEntry, JourneyStatus

__all__ = [
    "TripFacts",
    "feed_json",
    "trip_updates",
    "vehicle_positions",
]

GTFS_RT_VERSION = "2.0"
SKIPPED = "gtfs_rt_skipped"  # the counter of entities left out

log = logging.getLogger("busfleet.central.gtfs_rt")
Counters = MutableMapping[str, int]
# What protobuf raises for a value its field cannot hold (an int32 delay of 2^40, a negative
# uint64 timestamp), and int() for a float that is no integer (inf, NaN).
_BAD_VALUE = (ValueError, TypeError, OverflowError)


def _add_entity(
    feed: Any, bus: str, build: Callable[[Any], bool], counters: Counters | None
) -> None:
    """Build one bus's entity apart and add it to `feed` only if that worked (`build` returns
    False for a bus with nothing to say); otherwise leave it out, count and log it."""
    entity = rt.FeedEntity()
    entity.id = bus
    try:
        if not build(entity):
            return
    except _BAD_VALUE as exc:
        if counters is not None:
            counters[SKIPPED] = counters.get(SKIPPED, 0) + 1
        log.warning("GTFS-RT: left out bus %s: %s", bus, exc)
        return
    feed.entity.add().CopyFrom(entity)


@dataclass(frozen=True, slots=True)
class TripFacts:
    """What the timetable says about a trip, for the TripDescriptor."""

    route_id: str
    direction_id: int | None = None
    start_s: int | None = None  # first departure, seconds from the service day's start


TripLookup = Callable[[str], TripFacts | None]


def _no_trips(_trip_id: str) -> TripFacts | None:
    return None


# (trip_id, route_id) -> the trip's stops a diversion skips now: (stop_id, stop_sequence)
SkippedLookup = Callable[[str, str | None], Sequence[tuple[str, int | None]]]


def _no_skips(_trip_id: str, _route_id: str | None) -> Sequence[tuple[str, int | None]]:
    return ()


# (trip_id, the bus's journey, now) -> the predicted calls ahead, in order ([]: none)
PredictionLookup = Callable[[str, JourneyStatus, float], Sequence[StopPrediction]]


def _no_predictions(
    _trip_id: str, _journey: JourneyStatus, _now: float
) -> Sequence[StopPrediction]:
    return ()


def _header(feed: Any, now: float) -> None:
    feed.header.gtfs_realtime_version = GTFS_RT_VERSION
    feed.header.incrementality = rt.FeedHeader.FULL_DATASET
    feed.header.timestamp = int(now)


def _live(entry: FleetEntry) -> bool:
    return entry.online and entry.lat is not None and entry.lon is not None


def _current_trip(entry: FleetEntry, journey: JourneyStatus | None) -> str | None:
    if journey is not None:
        return None if journey.finished else journey.trip_id
    return entry.trip_id


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _describe_trip(
    descriptor: Any,
    trip_id: str,
    entry: FleetEntry,
    journey: JourneyStatus | None,
    trips: TripLookup,
) -> None:
    descriptor.trip_id = trip_id
    facts = trips(trip_id)
    route = (journey.route_id if journey else None) or (facts.route_id if facts else None)
    route = route or entry.route_id
    if route:
        descriptor.route_id = route
    if facts is not None:
        if facts.direction_id is not None:
            descriptor.direction_id = facts.direction_id
        if facts.start_s is not None:
            descriptor.start_time = _hms(facts.start_s)
    if journey is not None and journey.start_date:
        descriptor.start_date = journey.start_date
    descriptor.schedule_relationship = rt.TripDescriptor.SCHEDULED


def vehicle_positions(
    entries: Iterable[FleetEntry],
    journeys: Mapping[str, JourneyStatus],
    now: float,
    *,
    trips: TripLookup = _no_trips,
    counters: Counters | None = None,
) -> Any:
    """A FeedMessage with one VehiclePosition per live bus (entity id = bus id)."""
    feed = rt.FeedMessage()
    _header(feed, now)
    for entry in sorted(entries, key=lambda e: e.bus):
        if not _live(entry):
            continue
        build = functools.partial(
            _vehicle_position, entry=entry, journey=journeys.get(entry.bus), trips=trips
        )
        _add_entity(feed, entry.bus, build, counters)
    return feed


def _vehicle_position(
    entity: Any, *, entry: FleetEntry, journey: JourneyStatus | None, trips: TripLookup
) -> bool:
    vp = entity.vehicle
    vp.vehicle.id = entry.bus
    vp.vehicle.label = entry.bus
    assert entry.lat is not None and entry.lon is not None  # _live
    vp.position.latitude = entry.lat
    vp.position.longitude = entry.lon
    if entry.speed is not None:
        vp.position.speed = entry.speed
    if entry.t is not None:
        vp.timestamp = int(entry.t)
    trip_id = _current_trip(entry, journey)
    if trip_id:
        _describe_trip(vp.trip, trip_id, entry, journey, trips)
    elif entry.route_id:  # a route assignment not yet matched to a trip
        vp.trip.route_id = entry.route_id
    if journey is not None and not journey.finished and journey.stop_id:
        vp.stop_id = journey.stop_id
        if journey.stop_sequence is not None:
            vp.current_stop_sequence = journey.stop_sequence
        vp.current_status = (
            rt.VehiclePosition.STOPPED_AT if journey.at_stop else rt.VehiclePosition.IN_TRANSIT_TO
        )
    return True


def trip_updates(
    entries: Iterable[FleetEntry],
    journeys: Mapping[str, JourneyStatus],
    now: float,
    *,
    trips: TripLookup = _no_trips,
    skipped: SkippedLookup = _no_skips,
    predictions: PredictionLookup = _no_predictions,
    counters: Counters | None = None,
) -> Any:
    """A FeedMessage with one TripUpdate per live bus on a trip (entity id = bus id).

    With `predictions` for the trip, a StopTimeUpdate per stop ahead carries its predicted
    arrival (time, uncertainty in seconds) and departure (none at the last stop).

    Stops a diversion skips (`skipped(trip_id, route_id)`: (stop_id, stop_sequence) in stop
    order) and that are still ahead get a StopTimeUpdate with schedule_relationship SKIPPED.
    """
    feed = rt.FeedMessage()
    _header(feed, now)
    for entry in sorted(entries, key=lambda e: e.bus):
        if not _live(entry):
            continue
        journey = journeys.get(entry.bus)
        build = functools.partial(
            _trip_update,
            entry=entry,
            journey=journey,
            trips=trips,
            skipped=skipped,
            predictions=predictions,
            now=now,
        )
        _add_entity(feed, entry.bus, build, counters)
    return feed


def _trip_update(
    entity: Any,
    *,
    entry: FleetEntry,
    journey: JourneyStatus | None,
    trips: TripLookup,
    skipped: SkippedLookup,
    predictions: PredictionLookup = _no_predictions,
    now: float = 0.0,
) -> bool:
    """Fill `entity` with the bus's TripUpdate; False if it has none to give."""
    trip_id = _current_trip(entry, journey)
    if not trip_id:
        return False
    delay = known_delay(journey.delay_s) if journey else None
    stop_known = journey is not None and (journey.stop_id or journey.stop_sequence is not None)
    if delay is None and not stop_known:
        return False
    tu = entity.trip_update
    _describe_trip(tu.trip, trip_id, entry, journey, trips)
    tu.vehicle.id = entry.bus
    tu.vehicle.label = entry.bus
    stamp = journey.t if journey is not None else entry.t
    if stamp is not None:
        tu.timestamp = int(stamp)
    if delay is not None:
        tu.delay = delay
    skips = skipped(trip_id, journey.route_id if journey else entry.route_id)
    ahead = list(predictions(trip_id, journey, now)) if journey is not None and stop_known else []
    if ahead:
        _predicted_stops(tu, ahead, skips)
        return True
    if journey is not None and stop_known:
        stu = tu.stop_time_update.add()
        if journey.stop_sequence is not None:
            stu.stop_sequence = journey.stop_sequence
        if journey.stop_id:
            stu.stop_id = journey.stop_id
        if delay is None:
            stu.schedule_relationship = rt.TripUpdate.StopTimeUpdate.NO_DATA
        else:
            stu.arrival.delay = delay
            stu.departure.delay = delay
    _skip_stops(tu, skips, journey)
    return True


def _predicted_stops(
    tu: Any, ahead: Sequence[StopPrediction], skips: Sequence[tuple[str, int | None]]
) -> None:
    """One StopTimeUpdate per predicted call, a skipped one (a diversion) marked SKIPPED
    in its place; times in whole seconds, rounded alike so their order holds."""
    skipped_seq = {q for _, q in skips if q is not None}
    skipped_ids = {s for s, q in skips if q is None}
    last = len(ahead) - 1
    for k, p in enumerate(ahead):
        stu = tu.stop_time_update.add()
        stu.stop_sequence = p.sequence
        stu.stop_id = p.stop_id
        if p.sequence in skipped_seq or p.stop_id in skipped_ids:
            stu.schedule_relationship = rt.TripUpdate.StopTimeUpdate.SKIPPED
            continue
        stu.arrival.time = round(p.arrival_t)
        stu.arrival.uncertainty = round(p.uncertainty_s)
        if k < last:
            stu.departure.time = round(p.departure_t)
            stu.departure.uncertainty = round(p.uncertainty_s)


def _skip_stops(
    tu: Any, stops: Sequence[tuple[str, int | None]], journey: JourneyStatus | None
) -> None:
    """Append SKIPPED updates for the stops still ahead, keeping stop_sequence order."""
    here = journey.stop_sequence if journey is not None else None
    for stop_id, sequence in stops:
        if journey is not None and stop_id == journey.stop_id:
            continue  # the bus reports it as its next stop: not skipped for this bus
        if here is not None and sequence is not None and sequence <= here:
            continue  # behind the bus already
        stu = tu.stop_time_update.add()
        if sequence is not None:
            stu.stop_sequence = sequence
        stu.stop_id = stop_id
        stu.schedule_relationship = rt.TripUpdate.StopTimeUpdate.SKIPPED


def feed_json(feed: Any) -> dict[str, Any]:
    """The feed as the protobuf JSON mapping, with GTFS-RT's own field names (debugging)."""
    out: dict[str, Any] = json_format.MessageToDict(feed, preserving_proto_field_name=True)
    return out
