"""GTFS-Realtime from central: built from fleet state and journeys, served over HTTP, parsed
back with gtfs-realtime-bindings, and matching what the buses sent."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from google.transit import gtfs_realtime_pb2 as rt

from busfleet.broker.launch import Broker, free_port
from central.config import CentralConfig
from central.gtfs_import import import_gtfs
from central.http.gtfs_rt import TripFacts, trip_updates, vehicle_positions
from central.http.server import create_app, serving
from central.service.ingest import Ingest
from central.service.serve import serve
from central.service.service import CentralService
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.schemas import (
    Assignment,
    Event,
    EventBatch,
    FleetEntry,
    JourneyStatus,
    Position,
    Presence,
    ReportedState,
    TelemetryBatch,
    TelemetryRecord,
)

CAIRNS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"
T0 = 1_800_000_000.0


def cairns_rows(name: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(CAIRNS) as zf:
        return list(csv.DictReader(io.StringIO(zf.read(name).decode("utf-8-sig"))))


@pytest.fixture(scope="module")
def timetable() -> dict[str, Any]:
    """Two Cairns trips with their route, direction and calls, read with csv alone."""
    trips = {r["trip_id"]: r for r in cairns_rows("trips.txt")}
    calls: dict[str, list[dict[str, str]]] = {}
    for r in cairns_rows("stop_times.txt"):
        calls.setdefault(r["trip_id"], []).append(r)
    for rows in calls.values():
        rows.sort(key=lambda r: int(r["stop_sequence"]))
    chosen = sorted(t for t in trips if len(calls.get(t, ())) > 5)[:2]
    return {"trips": trips, "calls": calls, "chosen": chosen}


def parse(data: bytes) -> Any:
    feed = rt.FeedMessage()
    feed.ParseFromString(data)
    return feed


# -- the builder -----------------------------------------------------------------------------


def test_vehicle_positions_carry_each_live_bus_with_its_trip_and_stop() -> None:
    entries = [
        FleetEntry(bus="a", online=True, t=T0, lat=-16.9, lon=145.7, speed=7.5, trip_id="X"),
        FleetEntry(bus="b", online=True, t=T0 + 1, lat=-16.8, lon=145.6, route_id="R"),
        FleetEntry(bus="c", online=False, t=T0, lat=-16.7, lon=145.5, trip_id="Y"),  # offline
        FleetEntry(bus="d", online=True),  # no position yet
    ]
    journeys = {
        "a": JourneyStatus(t=T0, trip_id="T", stop_id="S4", stop_sequence=4, at_stop=True),
    }
    facts = {"T": TripFacts("R7", 1, 6 * 3600 + 5 * 60)}
    feed = parse(vehicle_positions(entries, journeys, T0 + 5, trips=facts.get).SerializeToString())
    assert feed.header.gtfs_realtime_version == "2.0" and feed.header.timestamp == int(T0 + 5)
    assert [e.id for e in feed.entity] == ["a", "b"]
    a, b = (e.vehicle for e in feed.entity)
    assert (a.position.latitude, a.position.longitude) == pytest.approx((-16.9, 145.7))
    assert a.position.speed == pytest.approx(7.5) and a.timestamp == int(T0)
    # The journey's trip wins over the assigned one: a route assignment is matched on board.
    assert (a.trip.trip_id, a.trip.route_id, a.trip.direction_id) == ("T", "R7", 1)
    assert a.trip.start_time == "06:05:00"
    assert (a.stop_id, a.current_stop_sequence) == ("S4", 4)
    assert a.current_status == rt.VehiclePosition.STOPPED_AT
    assert (b.trip.trip_id, b.trip.route_id) == ("", "R")
    assert b.vehicle.id == "b"


def test_trip_updates_give_the_delay_at_the_next_stop_or_say_no_data() -> None:
    entries = [
        FleetEntry(bus=bus, online=True, t=T0, lat=-16.9, lon=145.7, trip_id=f"T{bus}")
        for bus in ("late", "unknown", "plain", "done")
    ]
    journeys = {
        "late": JourneyStatus(t=T0, trip_id="Tlate", stop_id="S2", stop_sequence=2, delay_s=180),
        "unknown": JourneyStatus(t=T0, trip_id="Tunknown", stop_id="S9"),
        "done": JourneyStatus(t=T0, trip_id="Tdone", finished=True, delay_s=30),
    }
    feed = parse(trip_updates(entries, journeys, T0).SerializeToString())
    updates = {e.id: e.trip_update for e in feed.entity}
    assert sorted(updates) == ["late", "unknown"]  # "plain": nothing known; "done": finished
    (late,) = updates["late"].stop_time_update
    assert (late.stop_id, late.stop_sequence, late.arrival.delay) == ("S2", 2, 180)
    assert updates["late"].delay == 180 and updates["late"].trip.trip_id == "Tlate"
    (unknown,) = updates["unknown"].stop_time_update
    assert unknown.schedule_relationship == rt.TripUpdate.StopTimeUpdate.NO_DATA


# -- over HTTP, from a store that ingest filled -----------------------------------------------


@pytest.fixture(scope="module")
def cairns_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralStore]:
    store = CentralStore(tmp_path_factory.mktemp("rt") / "central.sqlite")
    import_gtfs(store, CAIRNS)
    yield store
    store.close()


def telemetry(bus: str, seq0: int, points: list[tuple[float, float]], t0: float = T0) -> bytes:
    records = [
        TelemetryRecord(seq=seq0 + i, t=t0 + i, pos=Position(lat=lat, lon=lon, speed=5.0 + i))
        for i, (lat, lon) in enumerate(points)
    ]
    return codec.encode(TelemetryBatch(bus=bus, records=records))


@contextlib.asynccontextmanager
async def http_client(store: CentralStore) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with (
        serving(create_app(store, cache_s=0.0), "127.0.0.1", 0) as (host, port),
        aiohttp.ClientSession() as session,
    ):
        yield session, f"http://{host}:{port}"


async def test_the_served_feeds_match_the_fleet_state_that_ingest_built(
    cairns_store: CentralStore, timetable: dict[str, Any]
) -> None:
    trip_a, trip_b = timetable["chosen"]
    calls_b = timetable["calls"][trip_b]
    ingest = Ingest(cairns_store)
    stop_a = timetable["calls"][trip_a][1]
    for bus in ("bus-a", "bus-b", "bus-c"):
        ingest.handle(
            topics.presence(bus),
            codec.encode(Presence(bus=bus, online=True, session=1, t=T0)),
            now=T0,
        )
    ingest.handle(
        topics.telemetry("bus-a"),
        telemetry("bus-a", 1, [(-16.91, 145.71), (-16.92, 145.72)]),
        now=T0 + 2,
    )
    ingest.handle(topics.telemetry("bus-b"), telemetry("bus-b", 1, [(-16.81, 145.61)]), now=T0 + 2)
    ingest.handle(topics.telemetry("bus-c"), telemetry("bus-c", 1, [(-16.71, 145.51)]), now=T0 + 2)
    dead = Presence(bus="bus-c", online=False, session=1, t=T0 + 3)
    ingest.handle(topics.presence("bus-c"), codec.encode(dead), now=T0 + 3)
    # bus-a reports its journey in its reported state; bus-b only through journey events.
    journey = JourneyStatus(
        t=T0 + 2,
        trip_id=trip_a,
        start_date="20140602",
        stop_id=stop_a["stop_id"],
        stop_sequence=int(stop_a["stop_sequence"]),
        delay_s=120,
    )
    reported_a = ReportedState(
        bus="bus-a", version=1, t=T0 + 2, assignment=Assignment(trip_id=trip_a), journey=journey
    )
    ingest.handle(topics.reported("bus-a"), codec.encode(reported_a), now=T0 + 2)
    reported_b = ReportedState(bus="bus-b", version=1, t=T0, assignment=Assignment(trip_id=trip_b))
    ingest.handle(topics.reported("bus-b"), codec.encode(reported_b), now=T0)
    departed = Event(
        seq=2,
        t=T0 + 1,
        kind="departed",
        data={
            "trip": trip_b,
            "route": timetable["trips"][trip_b]["route_id"],
            "index": 2,
            "stop": calls_b[2]["stop_id"],
            "delay_s": 60,
        },
    )
    ingest.handle(
        topics.events("bus-b"), codec.encode(EventBatch(bus="bus-b", events=[departed])), now=T0 + 2
    )
    ingest.take_dirty()  # what the service does every fleet_publish_s: fleet state to the store

    async with http_client(cairns_store) as (session, base):
        async with session.get(f"{base}/gtfs-rt/vehicle-positions") as resp:
            assert resp.status == 200 and resp.content_type == "application/x-protobuf"
            positions = parse(await resp.read())
        async with session.get(f"{base}/gtfs-rt/trip-updates") as resp:
            updates = parse(await resp.read())
        async with session.get(f"{base}/gtfs-rt/trip-updates?format=json") as resp:
            as_json = await resp.json()
        async with session.get(f"{base}/healthz") as resp:
            health = await resp.json()
        async with session.get(f"{base}/gtfs-rt/nothing") as resp:
            assert resp.status == 404

    vehicles = {e.id: e.vehicle for e in positions.entity}
    assert sorted(vehicles) == ["bus-a", "bus-b"]  # bus-c went offline
    fleet = {b: s.entry for b, s in ingest.buses.items()}
    for bus, vp in vehicles.items():
        assert (vp.position.latitude, vp.position.longitude) == pytest.approx(
            (fleet[bus].lat, fleet[bus].lon)
        )
        assert vp.timestamp == int(fleet[bus].t or 0)
    assert (
        vehicles["bus-a"].position.latitude,
        vehicles["bus-a"].position.longitude,
    ) == pytest.approx((-16.92, 145.72))
    a_trip = vehicles["bus-a"].trip
    first = timetable["calls"][trip_a][0]["departure_time"]
    assert (a_trip.trip_id, a_trip.route_id, a_trip.start_date) == (
        trip_a,
        timetable["trips"][trip_a]["route_id"],
        "20140602",
    )
    assert a_trip.start_time == first.zfill(8)

    tus = {e.id: e.trip_update for e in updates.entity}
    assert tus["bus-a"].stop_time_update[0].arrival.delay == 120
    assert tus["bus-a"].stop_time_update[0].stop_id == stop_a["stop_id"]
    # From bus-b's departure from its stop at index 2: the next stop is the trip's 4th call.
    (stu,) = tus["bus-b"].stop_time_update
    assert (stu.stop_id, stu.stop_sequence, stu.arrival.delay) == (
        calls_b[3]["stop_id"],
        int(calls_b[3]["stop_sequence"]),
        60,
    )
    assert tus["bus-b"].trip.route_id == timetable["trips"][trip_b]["route_id"]
    assert {e["id"] for e in as_json["entity"]} == {"bus-a", "bus-b"}
    assert as_json["header"]["gtfs_realtime_version"] == "2.0"
    assert health["ok"] is True and health["buses_online"] == 2
    assert health["gtfs"]["trips"] == len(timetable["trips"])


# -- the whole service, live ------------------------------------------------------------------


async def test_central_serve_publishes_a_bus_in_its_gtfs_realtime_feed(
    mosquitto: Broker, tmp_path: Path
) -> None:
    config = CentralConfig(
        db=str(tmp_path / "central.sqlite"),
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        fleet_publish_s=0.1,
        http_port=free_port(),
    )
    service = asyncio.create_task(serve(config, CentralService(config)))
    url = f"http://127.0.0.1:{config.http_port}/gtfs-rt/vehicle-positions"
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="bus-77") as bus:
            birth = Presence(bus="bus-77", online=True, session=1, t=T0)
            await bus.publish(topics.presence("bus-77"), codec.encode(birth), qos=1, retain=True)
            async with aiohttp.ClientSession() as session, asyncio.timeout(20):
                while True:
                    await bus.publish(
                        topics.telemetry("bus-77"),
                        # central's own clock: a time ahead of it never moves live state
                        telemetry("bus-77", 1, [(-16.93, 145.73)], t0=time.time()),
                        qos=1,
                    )
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(url) as resp:
                            feed = parse(await resp.read())
                        if [e.id for e in feed.entity] == ["bus-77"]:
                            break
                    await asyncio.sleep(0.3)
        vp = feed.entity[0].vehicle
        assert (vp.position.latitude, vp.position.longitude) == pytest.approx((-16.93, 145.73))
    finally:
        service.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await service
