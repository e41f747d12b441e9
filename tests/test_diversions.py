"""Diversions: dispatch defines one at central, it reaches the route's buses through their
desired state, the bus follows the detour by its own clock and comes back to the timetable
when the window ends, and GTFS-Realtime shows the skipped stops and a Service Alert.

The bus part drives a real Cairns trip (`tests/diversion_helpers.py`) through the agent's
`JourneyRuntime`, one simulated second per fix, far faster than real time. The central part
uses a store with the Cairns timetable imported; the CLI part a real mosquitto.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from google.transit import gtfs_realtime_pb2 as rt

from busfleet.broker.launch import Broker
from busfleet.cli import main
from central.assign import next_desired
from central.diversions import (
    DiversionError,
    DiversionSync,
    cancel_diversion,
    create_diversion,
    list_diversions,
    parse_path,
    parse_temp_stop,
)
from central.gtfs_import import import_gtfs
from central.http.server import Realtime
from central.store.db import CentralStore
from central.store.pg_store import open_store
from onboard.agent import Agent
from onboard.config import (
    AdsSection,
    AgentConfig,
    BusSection,
    CanSection,
    DisplaySection,
    GpsSection,
    MqttSection,
)
from onboard.journey.diversion import active_for, divert
from onboard.journey.plan import TripPlan, plan_trip
from onboard.journey.runtime import JourneyRuntime, TempStopEvent
from onboard.journey.tracker import JourneyEvent
from onboard.portal.content import Announcement as PortalAnnouncement
from onboard.portal.content import PortalContent
from onboard.portal.journey import with_journey
from protocols import codec, topics
from protocols.gtfs.feed import Feed, read_feed
from protocols.schemas import (
    Assignment,
    DesiredState,
    Diversion,
    Event,
    FleetEntry,
    JourneyStatus,
    Position,
    ReportedState,
    TelemetryRecord,
)
from tests.diversion_helpers import (
    GTFS,
    NOTICE_DE,
    NOTICE_EN,
    Ride,
    make_diversion,
    ride,
    service_day,
    trip_of_route,
)
from tests.fleet_helpers import central_config, central_running, cli_conn
from tests.postgres_helpers import PostgresServer

STOP_KINDS = ("arrived", "departed", "passed")


@pytest.fixture(scope="module")
def feed() -> Feed:
    return read_feed(GTFS)


@pytest.fixture(scope="module")
def run(feed: Feed) -> Ride:
    return ride(feed)


def _window(run: Ride) -> tuple[float, float]:
    d = run.diversion
    assert d.valid_from is not None and d.valid_to is not None
    return d.valid_from, d.valid_to


# -- the bus -----------------------------------------------------------------------------------


def test_the_detour_replaces_the_path_between_its_ends_and_keeps_the_other_stops(
    feed: Feed, run: Ride
) -> None:
    plan, detour = run.plan, run.detour
    assert detour.plan.diverted and detour.leave_m is not None and detour.rejoin_m is not None
    assert {s.stop_id for s in detour.skipped} == set(run.diversion.skip)
    served = [s.stop_id for s in detour.plan.stops if s.stop_id not in detour.temp_ids]
    assert served == [s.stop_id for s in plan.stops if s.stop_id not in run.diversion.skip]
    # The temporary stop lies on the detour, numbered like the next regular stop.
    (temp,) = [s for s in detour.plan.stops if s.stop_id in detour.temp_ids]
    assert detour.leave_m < temp.dist_m < detour.rejoin_m
    after = detour.plan.stops[temp.index + 1]
    assert temp.sequence == after.sequence
    assert detour.plan.stops[temp.index - 1].departure_s <= temp.arrival_s <= after.arrival_s
    # A trip of the route running the other way drives the detour reversed.
    reverse = next(
        tid
        for tid, trip in feed.trips.items()
        if trip.route_id == plan.route_id
        and trip.direction_id != feed.trips[plan.trip_id].direction_id
    )
    back = divert(plan_trip(feed, reverse, plan.service_date), run.diversion)
    assert back.path == tuple(reversed(detour.path))


def test_a_diversion_applies_to_its_route_and_trips_within_its_window_only() -> None:
    d = Diversion(id="d1", route_id="R", trips=["T1"], skip=["S"], valid_from=100, valid_to=200)
    assert active_for([d], "R", "T1", 150.0) == (d,)
    assert active_for([d], "R", "T2", 150.0) == ()
    assert active_for([d], "Q", "T1", 150.0) == ()
    assert active_for([d], "R", "T1", 99.0) == ()
    assert active_for([d], "R", "T1", 200.0) == ()


def test_the_bus_follows_the_detour_without_off_route_and_never_announces_a_skipped_stop(
    run: Ride,
) -> None:
    kinds = [e.kind for e in run.events]
    assert "off_route" not in kinds and "back_on_route" not in kinds
    assert all(s.adherence != "off" for s in run.steps)
    announced = {e.data().get("stop") for e in run.events if e.kind in STOP_KINDS}
    assert not announced & run.skipped
    for step in run.steps:
        assert step.view is not None and step.status is not None
        if step.view.next_stops:
            assert not step.view.next_stops[0].skipped
            assert step.view.next_stops[0].stop_id not in run.skipped
        assert step.status.stop_id not in run.skipped
    # The temporary stop is tracked like any other, and marked as such for central.
    temp = [e for e in run.events if isinstance(e, TempStopEvent)]
    assert temp and {e.stop_id for e in temp} == set(run.detour.temp_ids)
    assert all(e.data()["temporary"] is True for e in temp)


def test_while_diverted_the_display_marks_skipped_stops_and_shows_the_notice(run: Ride) -> None:
    start, end = _window(run)
    inside = [s for s in run.steps if start <= s.t < end]
    assert inside and all(s.diverted and s.notice for s in inside)
    assert all(NOTICE_DE in (s.notice or "") and NOTICE_EN in (s.notice or "") for s in inside)
    marked = [s for s in inside if s.view and any(n.skipped for n in s.view.next_stops)]
    assert marked, "the display never listed the skipped stops"
    for step in marked:
        assert step.view is not None
        shown = [n.stop_id for n in step.view.next_stops if n.skipped]
        assert set(shown) <= run.skipped
        assert all(n.expected is None for n in step.view.next_stops if n.skipped)
        assert step.status is not None and step.status.diversions == [run.diversion.id]


def test_when_the_window_ends_the_trip_runs_on_the_timetable_again(run: Ride) -> None:
    start, end = _window(run)
    changes = [(e.kind, e.t) for e in run.events if e.kind in ("diverted", "diversion_ended")]
    assert changes[0][0] == "diverted" and start <= changes[0][1] < start + 2.0
    assert changes[1][0] == "diversion_ended" and end <= changes[1][1] < end + 2.0
    after = [s for s in run.steps if s.t >= end + 1.0]
    assert after and not any(s.diverted or s.notice for s in after)
    assert not any(n.skipped for s in after if s.view for n in s.view.next_stops)
    assert all(s.status is not None and s.status.diversions == [] for s in after)
    # Every stop of the timetable got one outcome, in order, with the timetable's own index,
    # except the skipped ones, which got none; the trip finished.
    outcomes = [
        e for e in run.events if isinstance(e, JourneyEvent) and e.kind in ("arrived", "passed")
    ]
    assert [e.stop_index for e in outcomes] == [
        s.index for s in run.plan.stops if s.stop_id not in run.skipped
    ]
    assert all(run.plan.stops[e.stop_index or 0].stop_id == e.stop_id for e in outcomes)
    assert run.events[-1].kind == "trip_finished"


def test_the_wifi_portal_and_the_driver_get_the_diversion_and_the_skipped_stops(
    feed: Feed, run: Ride
) -> None:
    assert run.detour.leave_m is not None
    approaching = ride(feed, until_m=run.detour.leave_m - 300.0)  # the detour is just ahead
    base = PortalContent(line="121-423", announcements=(PortalAnnouncement("Guten Tag"),))
    content = with_journey(base, approaching.runtime)
    assert content.line == run.plan.route_short_name
    assert content.destination == run.plan.headsign
    notice = content.announcements[0]
    assert NOTICE_DE in notice.text("de") and NOTICE_EN in notice.text("en")
    skipped_names = [s.name for s in run.detour.skipped]
    assert all(name in notice.text("de") for name in skipped_names)
    assert content.announcements[1:] == base.announcements
    marked = [s for s in content.next_stops if "entfällt" in s.name]
    assert marked and all(s.expected is None for s in marked)
    assert "entfällt" not in content.next_stops[0].name
    # What the driver terminal draws: the diverted plan and where its detour runs.
    runtime = approaching.runtime
    assert runtime.plan is not None and runtime.plan.diverted
    assert runtime.detour_m == (run.detour.leave_m, run.detour.rejoin_m)


def test_a_route_assignment_waits_for_a_fix_and_an_unchanged_trip_keeps_its_progress(
    feed: Feed,
) -> None:
    tid = trip_of_route(feed)
    plan = plan_trip(feed, tid, service_day(feed, tid))
    runtime = JourneyRuntime(feed)
    t = plan.departure_t(3) + 20.0
    runtime.assign(Assignment(route_id=plan.route_id), [], t)
    assert runtime.tracker is None  # which trip? only a fix can tell
    lat, lon, heading = plan.path.point_at(plan.stops[3].dist_m + 150.0)
    pos = Position(lat=lat, lon=lon, speed=8.0, track=heading, hdop=1.0)
    first = runtime.update(t, pos)
    assert runtime.tracker is not None and runtime.tracker.plan.trip_id == tid
    assert first.republish and runtime.status() is not None
    tracker = runtime.tracker
    # The same trip named explicitly: the tracker (and its progress) stays.
    runtime.assign(Assignment(trip_id=tid, route_id=plan.route_id), [], t + 1.0)
    assert runtime.tracker is tracker
    # Nothing new at stop granularity: no republish; a stop further on: republish.
    lat, lon, _ = plan.path.point_at(plan.stops[3].dist_m + 158.0)
    moved = Position(lat=lat, lon=lon, speed=8.0, track=heading, hdop=1.0)
    assert not runtime.update(t + 1.0, moved).republish
    assert runtime.update(t + 2.0, None).republish is False


def _agent(tmp_path: Path) -> Agent:
    return Agent(
        AgentConfig(
            bus=BusSection(id="bus-07", data_dir=str(tmp_path)),
            mqtt=MqttSection(insecure_dev_broker=True),
            gps=GpsSection(source="none"),
            can=CanSection(interface="none"),
            ads=AdsSection(enabled=False),
            display=DisplaySection(enabled=False),
        )
    )


def test_the_agent_takes_diversions_from_its_desired_state_and_reports_them(
    feed: Feed, run: Ride, tmp_path: Path
) -> None:
    agent = _agent(tmp_path)
    try:
        agent.journey = JourneyRuntime(feed)
        start, _ = _window(run)
        desired = DesiredState(
            bus="bus-07",
            version=3,
            assignment=Assignment(trip_id=run.plan.trip_id),
            diversions=[run.diversion],
        )
        agent.on_desired(codec.encode(desired))
        d = run.detour.plan.stops[2].dist_m  # on the shared part of the path, in the window
        lat, lon, heading = run.detour.plan.path.point_at(d)
        pos = Position(lat=lat, lon=lon, speed=6.0, track=heading, hdop=1.0)
        agent._track(TelemetryRecord(seq=0, t=start + 60.0, pos=pos))
        body = agent._reported_payload()
        journey = codec.decode(ReportedState, body).journey
        assert journey is not None and journey.trip_id == run.plan.trip_id
        assert journey.diversions == [run.diversion.id]
        events = [codec.decode(Event, p.body) for p in agent.outbox.pending(100, kind="event")]
        (diverted,) = [e for e in events if e.kind == "diverted"]
        assert diverted.data["diversions"] == run.diversion.id
    finally:
        agent.outbox.close()


# -- central -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CentralStore]:
    """Central's store with the feed, on both backends (one per module: the import is slow)."""
    server: PostgresServer | None = None
    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("central") / "central.sqlite")
    else:
        server = request.getfixturevalue("postgres")
        db = server.create_database()
    s = open_store(db)
    try:
        import_gtfs(s, GTFS)
        yield s
    finally:
        s.close()
        if server is not None:
            server.drop_database(db)


def _other_route_trip(feed: Feed, plan: TripPlan) -> str:
    return next(t for t, trip in feed.trips.items() if trip.route_id != plan.route_id)


def _desired(store: CentralStore, bus: str) -> DesiredState:
    stored = store.desired(bus)
    assert stored is not None
    return codec.decode(DesiredState, stored[1])


def test_central_pushes_a_diversion_to_the_buses_of_its_route_and_to_buses_assigned_later(
    feed: Feed, run: Ride, store: CentralStore
) -> None:
    plan, now = run.plan, 1_000.0
    next_desired(store, "bus-a", Assignment(trip_id=plan.trip_id), now)
    next_desired(store, "bus-b", Assignment(trip_id=_other_route_trip(feed, plan)), now)
    d = make_diversion(plan)
    diversion, published = create_diversion(
        store,
        route_id=plan.route_id,
        skip=d.skip,
        temp_stops=[(t.name, t.lat, t.lon) for t in d.temp_stops],
        path=d.path,
        valid_from=now + 60.0,
        valid_to=now + 3600.0,
        notice_de=NOTICE_DE,
        notice_en=NOTICE_EN,
        now=now,
    )
    assert set(published) == {"bus-a"}
    assert _desired(store, "bus-a").diversions == [diversion]
    assert _desired(store, "bus-b").diversions == []
    assert diversion.temp_stops[0].id.startswith(diversion.id)
    # bus-b moves onto the route: the periodic sync gives it the diversion.
    sync = DiversionSync(store)
    assert sync.step(now + 1.0) == {}
    next_desired(store, "bus-b", Assignment(trip_id=plan.trip_id), now + 2.0)
    assert set(sync.step(now + 3.0)) == {"bus-b"}
    assert _desired(store, "bus-b").diversions == [diversion]
    cancel_diversion(store, diversion.id, now + 4.0)
    assert _desired(store, "bus-a").diversions == _desired(store, "bus-b").diversions == []
    with pytest.raises(DiversionError, match="cancelled already"):
        cancel_diversion(store, diversion.id, now + 5.0)


def test_a_diversion_that_cannot_work_is_refused_with_the_reason(
    feed: Feed, run: Ride, store: CentralStore
) -> None:
    route, now = run.plan.route_id, 1_000.0
    cases: list[tuple[dict[str, object], str]] = [
        ({"route_id": "nope", "skip": ["750141"]}, "not in the imported"),
        ({"route_id": route}, "needs skipped stops"),
        ({"route_id": route, "skip": ["750452x"]}, "not served by route"),
        ({"route_id": route, "trips": [_other_route_trip(feed, run.plan)], "skip": ["750141"]},
         "not a trip of route"),
        ({"route_id": route, "path": [(-16.9, 145.7)]}, "at least two points"),
        ({"route_id": route, "skip": ["750141"], "valid_to": now - 1}, "already be over"),
        ({"route_id": route, "temp_stops": [("x", 95.0, 145.0)]}, "Expected"),
    ]  # fmt: skip
    for kwargs, reason in cases:
        with pytest.raises(DiversionError, match=reason):
            create_diversion(store, now=now, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(DiversionError):
        parse_path("-16.9,145.7")
    with pytest.raises(DiversionError):
        parse_temp_stop("no coordinates")
    assert parse_temp_stop("Lake St, north side,-16.9,145.7") == (
        "Lake St, north side",
        -16.9,
        145.7,
    )


def _feed(realtime: Realtime, kind: str) -> rt.FeedMessage:
    message = realtime.feed(kind)
    assert isinstance(message, rt.FeedMessage)
    return message


def test_gtfs_realtime_marks_skipped_stops_and_alerts_until_the_window_ends(
    run: Ride, store: CentralStore
) -> None:
    plan, now = run.plan, 2_000.0
    next_desired(store, "bus-c", Assignment(trip_id=plan.trip_id), now)
    d = make_diversion(plan)
    diversion, _ = create_diversion(
        store,
        route_id=plan.route_id,
        skip=d.skip,
        path=d.path,
        valid_from=now + 10.0,
        valid_to=now + 600.0,
        notice_de=NOTICE_DE,
        notice_en=NOTICE_EN,
        now=now,
    )
    here = plan.stops[2]  # the bus drives to the third stop, before the detour
    store.save_reported(
        "bus-c",
        1,
        codec.encode(
            ReportedState(
                bus="bus-c",
                version=1,
                t=now + 20.0,
                journey=JourneyStatus(
                    t=now + 20.0,
                    trip_id=plan.trip_id,
                    route_id=plan.route_id,
                    stop_id=here.stop_id,
                    stop_sequence=here.sequence,
                    delay_s=60,
                ),
            )
        ),
    )
    entry = FleetEntry(bus="bus-c", online=True, lat=here.lat, lon=here.lon, trip_id=plan.trip_id)
    clock = [now + 30.0]
    realtime = Realtime(store, fleet=lambda: [entry], cache_s=0.0, clock=lambda: clock[0])

    (update,) = [e.trip_update for e in _feed(realtime, "trip-updates").entity]
    stus = list(update.stop_time_update)
    assert stus[0].stop_id == here.stop_id and stus[0].arrival.delay == 60
    skipped = [(s.stop_id, s.stop_sequence) for s in stus[1:]]
    expected = [(s.stop_id, s.sequence) for s in plan.stops if s.stop_id in diversion.skip]
    assert skipped == expected
    assert all(s.schedule_relationship == s.SKIPPED for s in stus[1:])

    (alert,) = [e for e in _feed(realtime, "alerts").entity if e.id == diversion.id]
    assert alert.alert.effect == rt.Alert.DETOUR
    assert alert.alert.active_period[0].start == int(now + 10.0)
    assert alert.alert.active_period[0].end == int(now + 600.0)
    assert any(s.route_id == plan.route_id and not s.stop_id for s in alert.alert.informed_entity)
    assert {s.stop_id for s in alert.alert.informed_entity if s.stop_id} == set(diversion.skip)
    texts = {t.language: t.text for t in alert.alert.header_text.translation}
    assert texts == {"de": NOTICE_DE, "en": NOTICE_EN}
    names = {s.name for s in plan.stops if s.stop_id in diversion.skip}
    description = alert.alert.description_text.translation[0].text
    assert all(name in description for name in names)

    # The window ends: central drops it from the documents, the feeds are normal again.
    clock[0] = now + 601.0
    assert "bus-c" in DiversionSync(store).step(clock[0])
    assert _desired(store, "bus-c").diversions == []
    assert [r.status for r in list_diversions(store) if r.diversion.id == diversion.id] == [
        "expired"
    ]
    (update,) = [e.trip_update for e in _feed(realtime, "trip-updates").entity]
    assert [s.stop_id for s in update.stop_time_update] == [here.stop_id]
    assert not [e for e in _feed(realtime, "alerts").entity if e.id == diversion.id]


# -- the command line --------------------------------------------------------------------------


async def _retained_desired(broker: Broker, bus: str) -> DesiredState:
    async with aiomqtt.Client(broker.host, broker.port, identifier="test-desired") as client:
        await client.subscribe(topics.desired(bus), qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return codec.decode(DesiredState, message.payload)
    raise AssertionError("no retained desired state")


def test_dispatch_diverts_a_route_from_the_command_line_and_the_bus_gets_it_retained(
    run: Ride, mosquitto: Broker, central_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = central_db
    store = open_store(db)
    try:
        import_gtfs(store, GTFS)
        next_desired(store, "bus-d", Assignment(trip_id=run.plan.trip_id))
    finally:
        store.close()
    conn = cli_conn(mosquitto, db)
    with central_running(central_config(mosquitto, db)):  # the tools ask it
        d = make_diversion(run.plan)
        path = ";".join(f"{la},{lo}" for la, lo in d.path)
        temp = d.temp_stops[0]
        argv = ["central", "divert", "create", run.plan.route_id, *conn, "--skip", *d.skip,
                "--temp-stop", f"{temp.name},{temp.lat},{temp.lon}", f"--path={path}",
                "--until", "+2h", "--notice-de", NOTICE_DE, "--notice-en", NOTICE_EN]  # fmt: skip
        assert main(argv) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["published"] is True and list(summary["buses"]) == ["bus-d"]
        doc = asyncio.run(_retained_desired(mosquitto, "bus-d"))
        (diversion,) = doc.diversions
        assert diversion.id == summary["id"] and diversion.skip == d.skip
        assert diversion.notice_de == NOTICE_DE and diversion.temp_stops[0].name == temp.name
        assert len(diversion.path) == len(d.path)

        assert main(["central", "divert", "list", *conn]) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(r["id"], r["status"]) for r in listed] == [(diversion.id, "active")]
        assert main(["central", "divert", "cancel", diversion.id, *conn]) == 0
        capsys.readouterr()
        assert asyncio.run(_retained_desired(mosquitto, "bus-d")).diversions == []
        assert main(["central", "divert", "cancel", diversion.id, *conn]) == 2
