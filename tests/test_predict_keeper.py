"""Central learns the prediction model once an hour per process, on a worker thread with its
own connection (central/predictions/keeper.py): GTFS-RT and the model sent to the buses read the
same model, nothing learns it twice, and the event loop goes on ingesting and serving while a
learn runs (here one held by a gate); until the first model is there, predictions are
timetable + current delay. A learn that fails keeps the model before and is tried again."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import aiomqtt
import msgspec
import pytest

from busfleet.broker.launch import Broker, free_port
from central.config import CentralConfig
from central.desired import update_desired
from central.gtfs_import import import_gtfs
from central.predictions.keeper import ModelKeeper
from central.predictions.learn import learn
from central.predictions.live import TripPredictor
from central.service.serve import serve
from central.service.service import CentralService
from central.service.sync import DesiredSync
from central.store import gtfs as gtfs_db
from central.store.db import CentralStore
from central.store.pg_store import open_store
from central.store.predictions import trip_schedule
from hw_sim.traffic import SimStop, TrafficModel, simulate_trip
from protocols import codec, topics
from protocols.gtfs.feed import read_feed
from protocols.predict import PredictionModel
from protocols.schemas import (
    Assignment,
    DesiredState,
    JourneyStatus,
    Position,
    Presence,
    ReportedState,
    TelemetryBatch,
    TelemetryRecord,
)

CAIRNS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"
ROUTE = "110-423"


def history(store: CentralStore, trip_id: str, today: dt.date, days: int) -> None:
    """`days` service days before `today` of trip `trip_id` driven in the simulator's traffic,
    as a bus records them (arrived / departed with trip, index and stop)."""
    feed = read_feed(CAIRNS)
    tz = ZoneInfo(feed.timezone or "UTC")
    calls = feed.stop_times(trip_id)
    _, placed = feed.trip_path(trip_id)
    traffic = TrafficModel(seed=17, tz=feed.timezone or "UTC")
    rows: list[tuple[object, ...]] = []
    for d in range(1, days + 1):
        day = today - dt.timedelta(days=d)
        midnight = dt.datetime.combine(day, dt.time(), tz).timestamp()
        stops = [
            SimStop(c.stop_id, midnight + c.arrival_s, midnight + c.departure_s, m)
            for c, (_, m) in zip(calls, placed, strict=True)
        ]
        for k, c in enumerate(simulate_trip(traffic, stops, trip_key=trip_id, day=day)):
            data = json.dumps({"trip": trip_id, "index": k, "stop": c.stop_id})
            for kind, t in (("arrived", c.arrived_t), ("departed", c.departed_t)):
                rows.append(("bus-h", len(rows), t, kind, 0, data, 0, t + 1.0))
    assert store.add_events(rows) == len(rows)


def route_trip(store: CentralStore, near_s: float) -> str:
    """The route's trip whose first departure is nearest `near_s` (seconds of the day)."""
    trips = [t for (t,) in store.db.execute(
        "SELECT trip_id FROM gtfs_trips WHERE route_id = ?", [ROUTE]
    )]  # fmt: skip
    return min(trips, key=lambda t: abs(trip_schedule(store, t)[0][3] - near_s))


class Counting:
    """`learn`, counting its calls and the connections it was given."""

    def __init__(self, main: CentralStore) -> None:
        self.main = main
        self.calls: list[float] = []
        self.own_connection: list[bool] = []
        self.threads: list[str] = []

    def __call__(self, store: CentralStore, now: float, *, tz: str, days: int) -> PredictionModel:
        self.calls.append(now)
        self.own_connection.append(store is not self.main)
        self.threads.append(threading.current_thread().name)
        return learn(store, now, tz=tz, days=days)


def test_one_learn_an_hour_feeds_gtfs_rt_and_the_buses_alike(central_db: str) -> None:
    store = open_store(central_db)
    import_gtfs(store, CAIRNS)
    tz = gtfs_db.timezone(store) or "UTC"
    monday = dt.date(2014, 6, 16)
    trip = route_trip(store, 7 * 3600)
    history(store, trip, monday + dt.timedelta(days=3), 3)  # Monday to Wednesday
    update_desired(
        store, "bus-1", lambda d: msgspec.structs.replace(d, assignment=Assignment(route_id=ROUTE))
    )
    start = dt.datetime.combine(monday + dt.timedelta(days=3), dt.time(6), ZoneInfo(tz))
    clock = [start.timestamp()]
    counting = Counting(store)
    keeper = ModelKeeper(store, clock=lambda: clock[0], learner=counting)
    predictor = TripPredictor(store, keeper, clock=lambda: clock[0])  # GTFS-RT's (Realtime)
    sync = DesiredSync(store, keeper)  # the service's: the model to the buses
    sent: list[PredictionModel] = []
    for minute in range(0, 150, 5):  # two and a half hours, both asking every five minutes
        clock[0] = start.timestamp() + 60 * minute
        predictor.tables()
        for _version, body in sync.step(clock[0]).values():
            model = codec.decode(DesiredState, body).predictions
            assert model is not None
            sent.append(model)
        assert keeper.wait(60)
    store.close()

    t0 = start.timestamp()
    assert counting.calls == [t0, t0 + 3600, t0 + 7200]  # once an hour, not once per consumer
    assert all(counting.own_connection) and "MainThread" not in counting.threads
    assert keeper.model is not None and keeper.model.built == t0 + 7200
    # Both consumers have the same model: GTFS-RT predicts from it, the buses got its part.
    assert predictor.tables() is keeper.tables
    assert [m.built for m in sent] == [t0, t0 + 3600, t0 + 7200]
    assert sent[-1].segments and all(s in keeper.model.segments for s in sent[-1].segments)


def test_a_failed_learn_is_counted_keeps_the_model_before_and_is_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CentralStore(tmp_path / "central.sqlite")
    fail = [False]
    counting = Counting(store)

    def learner(s: CentralStore, now: float, *, tz: str, days: int) -> PredictionModel:
        if fail[0]:
            raise RuntimeError("the database went away")
        return counting(s, now, tz=tz, days=days)

    keeper = ModelKeeper(store, learner=learner, refresh_s=3600, retry_s=300)
    first = keeper.poll(1000.0)
    assert first is None and keeper.wait(60)
    learned = keeper.model
    assert learned is not None and learned.built == 1000.0
    fail[0] = True
    with caplog.at_level(logging.ERROR, logger="busfleet.central.predictions"):
        assert keeper.poll(1000.0 + 3600) is learned and keeper.wait(60)
    assert keeper.failures == 1 and keeper.model is learned
    assert "learning the prediction model failed" in caplog.text
    assert keeper.poll(1000.0 + 3600 + 299) is learned and not keeper.learning  # not yet
    fail[0] = False
    keeper.poll(1000.0 + 3600 + 300)
    assert keeper.wait(60) and keeper.learns == 3
    assert keeper.model is not None and keeper.model.built == 1000.0 + 3900
    store.close()


# -- the whole service: a learn held by a gate, and the loop goes on ---------------------------


class Gated(Counting):
    """`learn` that waits for `gate` first (at most `hold_s`): `released` says whether the gate
    opened it, or whether it gave up waiting."""

    def __init__(self, main: CentralStore, hold_s: float) -> None:
        super().__init__(main)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.released: list[bool] = []
        self.hold_s = hold_s

    def __call__(self, store: CentralStore, now: float, *, tz: str, days: int) -> PredictionModel:
        self.entered.set()
        self.released.append(self.gate.wait(self.hold_s))
        return super().__call__(store, now, tz=tz, days=days)


async def fetch_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


def arrivals(feed: Any, bus: str) -> list[int]:
    for entity in feed.get("entity", []):
        if entity["id"] == bus:
            stus = entity["trip_update"].get("stop_time_update", [])
            return [int(s["arrival"]["time"]) for s in stus if "arrival" in s]
    return []


async def test_the_service_ingests_and_serves_while_the_model_is_learned(
    mosquitto: Broker, tmp_path: Path
) -> None:
    db = tmp_path / "central.sqlite"
    store = CentralStore(db)
    import_gtfs(store, CAIRNS)
    tz = ZoneInfo(gtfs_db.timezone(store) or "UTC")
    now = time.time()
    local = dt.datetime.fromtimestamp(now, tz)
    trip = route_trip(store, local.hour * 3600 + local.minute * 60)
    history(store, trip, local.date(), 13)  # every day type, within the 14 days learned
    on_route = Assignment(trip_id=trip, route_id=ROUTE)
    update_desired(store, "bus-7", lambda d: msgspec.structs.replace(d, assignment=on_route))
    calls = gtfs_db.trip_calls(store, trip)
    store.close()

    config = CentralConfig(
        db=str(db),
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        fleet_publish_s=0.1,
        http_port=free_port(),
    )
    service = CentralService(config)
    gated = Gated(service.store, hold_s=15.0)
    service.sync.keeper.learner = gated
    task = asyncio.create_task(serve(config, service))
    base = f"http://127.0.0.1:{config.http_port}"
    k = len(calls) // 3  # the bus has just left its k-th stop, a minute late
    start_date = local.date().strftime("%Y%m%d")
    journey = JourneyStatus(
        t=now,
        trip_id=trip,
        route_id=ROUTE,
        start_date=start_date,
        stop_id=calls[k + 1][0],
        stop_sequence=calls[k + 1][1],
        delay_s=60,
    )
    reported = ReportedState(bus="bus-7", version=1, t=now, assignment=on_route, journey=journey)
    try:
        async with (
            aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="bus-7") as bus,
            aiohttp.ClientSession() as session,
            asyncio.timeout(60),
        ):
            await bus.subscribe(topics.desired("bus-7"), qos=1)
            birth = Presence(bus="bus-7", online=True, session=1, t=now)
            await bus.publish(topics.presence("bus-7"), codec.encode(birth), qos=1, retain=True)
            await bus.publish(topics.reported("bus-7"), codec.encode(reported), qos=1, retain=True)
            await asyncio.to_thread(gated.entered.wait, 30)
            assert gated.entered.is_set() and service.sync.keeper.learning
            # The learn is held: the loop still ingests the bus and serves its feeds.
            seq = 0
            while True:
                seq += 1
                at = time.time()
                batch = TelemetryBatch(
                    bus="bus-7",
                    records=[TelemetryRecord(seq=seq, t=at, pos=Position(lat=-16.93, lon=145.73))],
                )
                await bus.publish(topics.telemetry("bus-7"), codec.encode(batch), qos=1)
                feed = await fetch_json(session, f"{base}/gtfs-rt/trip-updates?format=json")
                if arrivals(feed, "bus-7"):
                    break
                await asyncio.sleep(0.2)
            health = await fetch_json(session, f"{base}/healthz")
            assert health["buses_online"] == 1
            fallback = arrivals(feed, "bus-7")  # no model yet: timetable + current delay
            assert len(fallback) == len(calls) - k - 1
            assert not gated.gate.is_set() and service.sync.keeper.learning
            assert service.sync.keeper.learns == 1  # GTFS-RT and the sync asked; one learn
            gated.gate.set()
            await asyncio.to_thread(service.sync.keeper.wait, 30)
            model = service.sync.keeper.model
            assert gated.released == [True]  # the gate opened it, not its patience running out
            assert model is not None and model.segments
            # The bus gets its part of that model, and GTFS-RT predicts from it.
            async for message in bus.messages:
                if str(message.topic) == topics.desired("bus-7"):
                    doc = codec.decode(DesiredState, bytes(message.payload))
                    if doc.predictions is not None:
                        assert doc.predictions.built == model.built
                        break
            while True:
                await asyncio.sleep(1.1)  # the feed is cached for a second
                feed = await fetch_json(session, f"{base}/gtfs-rt/trip-updates?format=json")
                learned = arrivals(feed, "bus-7")
                if learned != fallback:
                    break
            assert len(learned) == len(fallback)
            assert sum(abs(a - b) for a, b in zip(learned, fallback, strict=True)) > 60
            assert service.sync.keeper.learns == 1 and len(gated.calls) == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
