"""GTFS-RT TripUpdates carry a predicted arrival (time and uncertainty) for every stop ahead,
in stop_sequence order and monotonic, parsed back with gtfs-realtime-bindings; the
predictions come from the model central learned from the stop events it holds."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from central.gtfs_import import import_gtfs
from central.http import gtfs_rt
from central.http.server import Realtime
from central.store.db import CentralStore
from hw_sim.traffic import Call, SimStop, TrafficModel, simulate_trip
from protocols import codec
from protocols.gtfs.feed import read_feed
from protocols.predict import StopPrediction
from protocols.schemas import Assignment, FleetEntry, JourneyStatus, ReportedState

CAIRNS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"
MONDAY = dt.date(2014, 6, 16)


def parse(data: bytes) -> Any:
    feed = rt.FeedMessage()
    feed.ParseFromString(data)
    return feed


def assert_ordered_and_monotonic(stus: Any, now: float) -> None:
    sequences = [s.stop_sequence for s in stus]
    assert sequences == sorted(set(sequences))
    last = int(now)
    for s in stus:
        if s.schedule_relationship == rt.TripUpdate.StopTimeUpdate.SKIPPED:
            continue
        assert s.arrival.time >= last and s.arrival.uncertainty >= 0
        last = s.arrival.time
        if s.HasField("departure"):
            assert s.departure.time >= s.arrival.time
            last = s.departure.time


def test_trip_updates_predict_every_stop_ahead_from_what_central_learned(tmp_path: Path) -> None:
    feed = read_feed(CAIRNS)
    tz = ZoneInfo(feed.timezone or "UTC")
    # A weekday trip leaving in the evening rush.
    trip_id = min(
        (
            t
            for t in feed.trips.values()
            if "Weekday-00" in t.service_id and t.route_id == "110-423"
        ),
        key=lambda t: abs(feed.stop_times(t.trip_id)[0].departure_s - 16.75 * 3600),
    ).trip_id
    calls = feed.stop_times(trip_id)
    _, placed = feed.trip_path(trip_id)

    def sim_stops(day: dt.date) -> list[SimStop]:
        midnight = dt.datetime.combine(day, dt.time(), tz).timestamp()
        return [
            SimStop(c.stop_id, midnight + c.arrival_s, midnight + c.departure_s, d)
            for c, (_, d) in zip(calls, placed, strict=True)
        ]

    traffic = TrafficModel(seed=17, tz=feed.timezone or "UTC")
    store = CentralStore(tmp_path / "central.sqlite")
    import_gtfs(store, CAIRNS)
    rows: list[tuple[object, ...]] = []
    for d in range(8):  # Monday..Friday, Monday..Wednesday (weekends have no such trip)
        day = MONDAY + dt.timedelta(days=d + (2 if d >= 5 else 0))
        done = simulate_trip(traffic, sim_stops(day), trip_key=trip_id, day=day)
        for k, c in enumerate(done):
            data = json.dumps({"trip": trip_id, "index": k, "stop": c.stop_id})
            for kind, t in (("arrived", c.arrived_t), ("departed", c.departed_t)):
                rows.append(("bus-h", len(rows), t, kind, 0, data, 0, t + 1.0))
    assert store.add_events(rows) == len(rows)

    test_day = MONDAY + dt.timedelta(days=10)  # Thursday, never learned from
    stops = sim_stops(test_day)
    truth: list[Call] = simulate_trip(traffic, stops, trip_key=trip_id, day=test_day)
    k = 3  # the bus has just left its 3rd stop
    now = truth[k].departed_t + 1.0
    delay = round(truth[k].departed_t - stops[k].departure_t)
    journey = JourneyStatus(
        t=now,
        trip_id=trip_id,
        route_id="110-423",
        start_date=test_day.strftime("%Y%m%d"),
        stop_id=calls[k + 1].stop_id,
        stop_sequence=calls[k + 1].sequence,
        delay_s=delay,
    )
    reported = ReportedState(
        bus="bus-1", version=1, t=now, assignment=Assignment(trip_id=trip_id), journey=journey
    )
    store.save_reported("bus-1", 1, codec.encode(reported))
    entry = FleetEntry(bus="bus-1", online=True, t=now, lat=-16.9, lon=145.7, trip_id=trip_id)
    realtime = Realtime(store, fleet=lambda: [entry], clock=lambda: now, cache_s=0.0)
    realtime.models.poll()  # central learns on a worker thread (keeper.py): the first model
    assert realtime.models.wait(60) and realtime.models.model is not None
    message = parse(realtime.feed("trip-updates").SerializeToString())
    store.close()

    (entity,) = message.entity
    stus = entity.trip_update.stop_time_update
    assert [s.stop_sequence for s in stus] == [c.sequence for c in calls[k + 1 :]]
    assert_ordered_and_monotonic(stus, now)
    assert all(s.arrival.uncertainty > 0 for s in stus)
    assert not stus[-1].HasField("departure")  # the last stop
    assert entity.trip_update.delay == delay
    # The model saw the rush coming: closer to what happened than timetable + delay.
    model_error = [
        abs(s.arrival.time - c.arrived_t) for s, c in zip(stus, truth[k + 1 :], strict=True)
    ]
    base_error = [
        abs(st.arrival_t + delay - c.arrived_t)
        for st, c in zip(stops[k + 1 :], truth[k + 1 :], strict=True)
    ]
    assert sum(model_error) < 0.75 * sum(base_error)


def test_predicted_updates_mark_the_stops_a_diversion_skips_in_their_place() -> None:
    now = 1_800_000_000.0
    ahead = [
        StopPrediction(f"s{q}", q, now + 60 * q, now + 60 * q + 10, 5.0 * q) for q in (4, 5, 6)
    ]
    journey = JourneyStatus(t=now, trip_id="T", stop_id="s4", stop_sequence=4, delay_s=30)
    entry = FleetEntry(bus="b", online=True, t=now, lat=1.0, lon=2.0, trip_id="T")
    feed = gtfs_rt.trip_updates(
        [entry],
        {"b": journey},
        now,
        skipped=lambda _t, _r: [("s5", 5)],
        predictions=lambda _t, _j, _n: ahead,
    )
    stus = parse(feed.SerializeToString()).entity[0].trip_update.stop_time_update
    assert [(s.stop_sequence, s.schedule_relationship) for s in stus] == [
        (4, rt.TripUpdate.StopTimeUpdate.SCHEDULED),
        (5, rt.TripUpdate.StopTimeUpdate.SKIPPED),
        (6, rt.TripUpdate.StopTimeUpdate.SCHEDULED),
    ]
    assert [s.arrival.time for s in stus] == [int(now + 240), 0, int(now + 360)]
    assert_ordered_and_monotonic(stus, now)


@pytest.mark.parametrize("delay", [None, 0])
def test_a_bus_without_predictions_keeps_the_delay_at_its_next_stop(delay: int | None) -> None:
    now = 1_800_000_000.0
    journey = JourneyStatus(t=now, trip_id="T", stop_id="s4", stop_sequence=4, delay_s=delay)
    entry = FleetEntry(bus="b", online=True, t=now, lat=1.0, lon=2.0, trip_id="T")
    feed = gtfs_rt.trip_updates([entry], {"b": journey}, now, predictions=lambda *_: [])
    (stu,) = parse(feed.SerializeToString()).entity[0].trip_update.stop_time_update
    assert stu.stop_sequence == 4 and not stu.arrival.time
