"""Central's alarms: the lifecycle table, the detectors, and the alarm center on a real store."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.fleet import alarms as rules
from central.fleet.alarms import (
    ACK,
    ACKED,
    ACTIVE,
    CLEAR,
    CLEARED,
    CLOSED,
    RAISE,
    AlarmError,
    AlarmParams,
    BusWatch,
    Hold,
)
from central.service.alarm_center import AlarmCenter
from central.service.ingest import Ingest
from central.store.db import CentralStore
from central.store.pg_store import open_store
from protocols import codec, compact, topics
from protocols.schemas import (
    Alarm,
    DesiredState,
    Event,
    EventBatch,
    FleetEntry,
    Position,
    Presence,
    ReportedState,
    Scalar,
    TelemetryBatch,
    TelemetryRecord,
    TimetableRef,
    TimetableState,
    Vehicle,
)

T0 = 1_800_000_000.0
P = AlarmParams()


def alarm(kind: str = "off_route", state: str = ACTIVE) -> Alarm:
    return Alarm(id="a-1", bus="bus-1", kind=kind, severity=3, state=state, raised_t=T0, t=T0)


def record(t: float, kmh: float, doors: bool | None = None, seq: int = 0) -> TelemetryRecord:
    return TelemetryRecord(
        seq=seq,
        t=t,
        pos=Position(lat=-16.92, lon=145.77, speed=kmh / 3.6),
        veh=Vehicle(speed_kmh=kmh, doors_open=doors),
    )


def events(
    *items: tuple[str, int, dict[str, Scalar]],
    backfill: bool = False,
    t: float = T0,
    first_seq: int = 1,
) -> EventBatch:
    return EventBatch(
        bus="bus-1",
        backfill=backfill,
        events=[
            Event(seq=first_seq + i, t=t + i, kind=k, severity=s, data=d)
            for i, (k, s, d) in enumerate(items)
        ],
    )


ENTRY = FleetEntry(bus="bus-1", online=True, lat=-16.9, lon=145.7)


@pytest.fixture
def center(central_db: str) -> AlarmCenter:
    """The store-backed tests run on both backends (SQLite and PostgreSQL)."""
    return AlarmCenter(open_store(central_db))


def published(center: AlarmCenter) -> dict[str, Alarm | None]:
    out: dict[str, Alarm | None] = {}
    for topic, payload, retain in center.take_outgoing():
        assert retain
        out[topics.alarm_id(topic)] = codec.decode(Alarm, payload) if payload else None
    return out


# -- the lifecycle ---------------------------------------------------------------------------


def test_an_acknowledged_alarm_closes_when_its_condition_ends() -> None:
    acked = rules.step(alarm(), ACK, T0 + 5, user="alice", note="driver called")
    assert (acked.state, acked.acked_by, acked.ack_note, acked.ack_t) == (
        ACKED,
        "alice",
        "driver called",
        T0 + 5,
    )
    closed = rules.step(acked, CLEAR, T0 + 9)
    assert (closed.state, closed.cleared_t, closed.acked_by) == (CLOSED, T0 + 9, "alice")


def test_an_alarm_over_before_anyone_acknowledged_it_waits_for_an_acknowledgement() -> None:
    cleared = rules.step(alarm(), CLEAR, T0 + 3)
    assert cleared.state == CLEARED
    assert rules.step(cleared, RAISE, T0 + 4).state == ACTIVE  # back: the same alarm
    assert rules.step(cleared, ACK, T0 + 5, user="bob").state == CLOSED


def test_acknowledging_twice_is_refused_naming_who_did_and_a_closed_alarm_takes_nothing() -> None:
    acked = rules.step(alarm(), ACK, T0, user="alice")
    with pytest.raises(AlarmError, match="already acknowledged by alice"):
        rules.step(acked, ACK, T0 + 1, user="bob")
    closed = rules.step(acked, CLEAR, T0 + 2)
    for what in (RAISE, CLEAR, ACK):
        with pytest.raises(AlarmError, match="closed"):
            rules.step(closed, what, T0 + 3)


def test_a_latched_alarm_closes_with_its_acknowledgement() -> None:
    emergency = alarm("emergency")
    assert rules.step(emergency, CLEAR, T0).state == CLEARED  # the table still applies
    closed = rules.step(emergency, ACK, T0 + 1, user="alice", note="police informed")
    assert (closed.state, closed.acked_by) == (CLOSED, "alice")


@given(st.lists(st.sampled_from([RAISE, CLEAR, ACK]), max_size=12))
def test_any_sequence_of_inputs_follows_the_table_or_is_refused(inputs: list[str]) -> None:
    a = alarm()
    for i, what in enumerate(inputs):
        expected = rules.TRANSITIONS.get((a.state, what))
        try:
            a = rules.step(a, what, T0 + i, user="u")
        except AlarmError:
            assert expected is None
            continue
        assert expected is not None and a.state == expected


# -- detectors -------------------------------------------------------------------------------


def test_a_sampled_condition_must_hold_to_raise_and_be_gone_to_clear() -> None:
    h, outs = Hold(), []
    for t, cond in [
        (0, True),
        (1, False),
        (2, True),
        (3, True),
        (4, True),
        (5, False),
        (20, False),
    ]:
        h, what = rules.hold_step(h, cond, float(t), 2.0, 10.0)
        outs.append(what)
    assert outs == [None, None, None, None, RAISE, None, CLEAR]


def test_a_door_open_while_moving_raises_after_two_seconds_and_never_at_a_stop() -> None:
    at_stop = [record(T0 + i, 0.0, doors=True) for i in range(10)]
    w, changes = rules.watch_telemetry(BusWatch(), at_stop, P)
    assert changes == []
    moving = [record(T0 + 10 + i, 20.0, doors=True) for i in range(3)]
    w, changes = rules.watch_telemetry(w, moving, P)
    assert [(c.what, c.kind, c.t) for c in changes] == [(RAISE, "door_open_moving", T0 + 12)]
    closed = [record(T0 + 13 + i, 20.0, doors=False) for i in range(11)]
    w, changes = rules.watch_telemetry(w, closed, P)
    assert [(c.what, c.kind) for c in changes] == [(CLEAR, "door_open_moving")]


def test_overspeed_needs_five_seconds_over_the_configured_limit() -> None:
    p = AlarmParams(overspeed_kmh=50.0)
    burst = [record(T0 + i, 60.0) for i in range(4)]  # 3 s over: a burst, not a habit
    w, changes = rules.watch_telemetry(BusWatch(), burst, p)
    assert changes == []
    w, changes = rules.watch_telemetry(w, [record(T0 + 10, 40.0)], p)
    sustained = [record(T0 + 20 + i, 62.0) for i in range(6)]
    w, changes = rules.watch_telemetry(w, sustained, p)
    assert [(c.what, c.kind, c.t) for c in changes] == [(RAISE, "overspeed", T0 + 25)]
    assert "62 km/h, limit 50" in changes[0].text


def test_an_outbox_growing_report_after_report_raises_and_shrinking_clears() -> None:
    w, seen = BusWatch(), []
    for n, waiting in enumerate([100, 350, 300, 400, 500, 650, 700, 120]):
        w, changes = rules.watch_reported(w, {"outbox": waiting}, None, None, T0 + 30 * n, P)
        seen += [(c.what, c.kind, waiting) for c in changes]
    assert seen == [(RAISE, "backlog", 500), (CLEAR, "backlog", 120)]


def test_a_refused_desired_state_raises_until_the_bus_runs_a_version_again() -> None:
    w, changes = rules.watch_reported(BusWatch(), {}, 7, "unknown trip", T0, P)
    assert [(c.what, c.kind) for c in changes] == [(RAISE, "state_rejected")]
    assert "version 7: unknown trip" in changes[0].text
    w, changes = rules.watch_reported(w, {}, None, None, T0 + 1, P)
    assert [(c.what, c.kind) for c in changes] == [(CLEAR, "state_rejected")]


def test_offline_is_raised_when_a_bus_goes_offline_not_when_first_seen_offline() -> None:
    off = msgspec.structs.replace(ENTRY, online=False)
    w, changes = rules.watch_tick(BusWatch(), off, T0, P)
    assert changes == []
    w, changes = rules.watch_tick(w, ENTRY, T0 + 1, P)
    assert [(c.what, c.kind) for c in changes] == [(CLEAR, "offline")]
    w, changes = rules.watch_tick(w, off, T0 + 2, P)
    assert [(c.what, c.kind, c.lat) for c in changes] == [(RAISE, "offline", ENTRY.lat)]


def test_out_of_sync_counts_only_while_online_and_clears_when_the_bus_catches_up() -> None:
    p = AlarmParams(sync_after_s=60.0)
    behind = msgspec.structs.replace(ENTRY, desired_version=3, reported_version=2)
    offline_behind = msgspec.structs.replace(behind, online=False)
    w, raised = BusWatch(), []
    timeline = [(0, behind), (50, offline_behind), (100, behind), (150, behind), (161, behind)]
    for t, entry in timeline:
        w, changes = rules.watch_tick(w, entry, T0 + t, p)
        raised += [(t, c.kind) for c in changes if c.what == RAISE]
    assert raised == [(50, "offline"), (161, "out_of_sync")]
    caught_up = msgspec.structs.replace(behind, reported_version=3)
    w, changes = rules.watch_tick(w, caught_up, T0 + 170, p)
    assert [(c.what, c.kind) for c in changes] == [(CLEAR, "out_of_sync")]


def test_a_dtc_alarm_is_one_per_fault_and_an_unknown_serious_event_is_latched() -> None:
    dtc = rules.from_event(Event(seq=1, t=T0, kind="dtc_new", data={"spn": 110, "fmi": 0}))
    assert dtc is not None and (dtc.what, dtc.kind, dtc.subject) == (RAISE, "dtc", "110/0")
    other = rules.from_event(Event(seq=2, t=T0, kind="fire_detected", severity=4))
    assert other is not None and (other.kind, other.severity) == ("fire_detected", 4)
    assert rules.info("fire_detected").latched
    assert rules.from_event(Event(seq=3, t=T0, kind="doors_opened")) is None


# -- the alarm center on a store ---------------------------------------------------------------


def test_a_live_off_route_event_raises_an_alarm_and_back_on_route_clears_it(
    center: AlarmCenter,
) -> None:
    center.on_events("bus-1", events(("off_route", 3, {"trip": "T1"})), ENTRY, T0)
    [raised] = published(center).values()
    assert raised is not None
    assert (raised.kind, raised.severity, raised.state, raised.lat) == (
        "off_route",
        3,
        ACTIVE,
        -16.9,
    )
    center.on_events("bus-1", events(("back_on_route", 0, {}), t=T0 + 60, first_seq=5), ENTRY, T0)
    [cleared] = published(center).values()
    assert cleared is not None and (cleared.id, cleared.state) == (raised.id, CLEARED)
    assert [a.state for a in center.alarms(open_only=True)] == [CLEARED]  # still to acknowledge


KINDS = ["off_route", "gps_lost", "dtc_new", "emergency", "dropped", "doors_opened", "x_fault"]


@given(
    st.lists(
        st.tuples(st.sampled_from([k for k in KINDS if k != "emergency"]), st.integers(0, 4)),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.tuples(st.floats(0, 200), st.booleans()), max_size=30),
)
def test_backfilled_events_and_telemetry_never_raise_an_alarm(
    items: list[tuple[str, int]], samples: list[tuple[float, bool]]
) -> None:
    # SQLite only: a store per generated example, in memory (the center's rules, not SQL).
    center = AlarmCenter(CentralStore(":memory:"))
    data: dict[str, Scalar] = {"spn": 1, "fmi": 2}
    batch = events(*[(k, s, data) for k, s in items], backfill=True)
    center.on_events("bus-1", batch, ENTRY, T0)
    records = [record(T0 + i, kmh, doors) for i, (kmh, doors) in enumerate(samples)]
    center.on_telemetry(
        "bus-1", TelemetryBatch(bus="bus-1", records=records, backfill=True), ENTRY, T0
    )
    assert center.alarms() == []
    assert center.take_outgoing() == []


def test_a_backfilled_event_clears_only_an_alarm_raised_before_it(center: AlarmCenter) -> None:
    center.on_events("bus-1", events(("gps_lost", 2, {}), t=T0 + 100), ENTRY, T0 + 100)
    older = events(("gps_regained", 0, {}), backfill=True, t=T0 + 50, first_seq=7)
    center.on_events("bus-1", older, ENTRY, T0 + 101)
    assert [a.state for a in center.alarms()] == [ACTIVE]
    newer = events(("gps_regained", 0, {}), backfill=True, t=T0 + 150, first_seq=9)
    center.on_events("bus-1", newer, ENTRY, T0 + 200)
    assert [a.state for a in center.alarms()] == [CLEARED]


def test_an_emergency_sent_twice_raises_one_alarm_even_once_it_was_acknowledged(
    center: AlarmCenter,
) -> None:
    batch = events(("emergency", 4, {"lat": -16.93, "lon": 145.75}))
    center.on_events("bus-1", batch, ENTRY, T0)
    [first] = center.alarms()
    assert (first.severity, first.lat, first.lon) == (4, -16.93, 145.75)
    closed = center.acknowledge(first.id, "alice", "police on the way", T0 + 30)
    assert closed.state == CLOSED
    center.on_events("bus-1", batch, ENTRY, T0 + 40)  # the bus never got its receipt
    assert [a.id for a in center.alarms()] == [first.id]
    center.on_events("bus-1", events(("emergency", 4, {}), t=T0 + 90), ENTRY, T0 + 90)
    assert len(center.alarms()) == 2  # a new emergency is a new alarm


def test_an_unknown_alarm_cannot_be_acknowledged(center: AlarmCenter) -> None:
    with pytest.raises(AlarmError, match="no alarm"):
        center.acknowledge("nope", "alice", "", T0)


def test_closed_alarms_leave_the_broker_after_the_keep_time(center: AlarmCenter) -> None:
    center.params = AlarmParams(keep_closed_s=600.0)
    center.on_events("bus-1", events(("emergency", 4, {})), ENTRY, T0)
    [a] = center.alarms()
    center.acknowledge(a.id, "alice", "", T0 + 1)
    published(center)
    center.tick([ENTRY], T0 + 300)
    assert published(center) == {}
    center.tick([ENTRY], T0 + 700)
    assert published(center) == {a.id: None}  # an empty retained message removes it
    center.republish()
    assert published(center) == {}


def test_open_alarms_outlive_a_restart_of_central(central_db: str) -> None:
    store = open_store(central_db)
    AlarmCenter(store).on_events("bus-1", events(("gps_lost", 2, {})), ENTRY, T0)
    store.close()
    store = open_store(central_db)
    again = AlarmCenter(store)
    again.republish()
    assert [a.kind for a in published(again).values() if a] == ["gps_lost"]
    again.on_events("bus-1", events(("gps_regained", 0, {}), t=T0 + 9, first_seq=4), ENTRY, T0)
    assert [a.state for a in again.alarms()] == [CLEARED]
    store.close()


def test_ingest_feeds_alarms_from_live_messages_only(central_db: str) -> None:
    ingest = Ingest(open_store(central_db))
    birth = Presence(bus="bus-1", online=True, session=1, t=T0)
    ingest.handle(topics.presence("bus-1"), codec.encode(birth), T0)
    lost = events(("dtc_new", 1, {"spn": 100, "fmi": 1}))
    ingest.handle(
        topics.events("bus-1"), codec.encode(msgspec.structs.replace(lost, backfill=True)), T0
    )
    assert ingest.alarms.alarms() == []
    ingest.handle(
        topics.events("bus-1"),
        codec.encode(events(("dtc_new", 1, {"spn": 100, "fmi": 1}), first_seq=10)),
        T0,
    )
    speeding = [record(T0 + i, 95.0, seq=20 + i) for i in range(8)]
    batch = TelemetryBatch(bus="bus-1", records=speeding)
    ingest.handle(topics.telemetry("bus-1"), compact.encode_batch(batch), T0 + 8)
    report = ReportedState(bus="bus-1", version=0, t=T0, rejected_version=2, error="bad")
    ingest.handle(topics.reported("bus-1"), codec.encode(report), T0 + 9)
    ingest.tick(T0 + 10)
    death = Presence(bus="bus-1", online=False, session=1, t=T0 + 11)
    ingest.handle(topics.presence("bus-1"), codec.encode(death), T0 + 11)
    ingest.tick(T0 + 12)
    kinds = sorted((a.kind, a.subject) for a in ingest.alarms.alarms())
    assert kinds == [("dtc", "100/1"), ("offline", ""), ("overspeed", ""), ("state_rejected", "")]


def test_a_drivers_emergency_from_an_outage_still_raises_the_highest_alarm(
    central_db: str,
) -> None:
    center = AlarmCenter(open_store(central_db))
    center.on_events("bus-1", events(("emergency", 4, {}), backfill=True), ENTRY, T0)
    (alarm,) = center.alarms()
    assert (alarm.kind, alarm.severity) == ("emergency", 4)


# -- the timetable a bus runs (issue 14) ----------------------------------------------------

TT = msgspec.structs.replace(
    ENTRY, timetable_desired=2, timetable_valid_from=T0, timetable=1, timetable_source="central"
)


def tt_changes(
    timeline: list[tuple[float, FleetEntry]], p: AlarmParams = P, w: BusWatch | None = None
) -> list[tuple[float, str, str]]:
    """(seconds after T0, what, text) of every timetable alarm change along `timeline`."""
    w, out = w or BusWatch(), []
    for t, entry in timeline:
        w, changes = rules.watch_tick(w, entry, T0 + t, p)
        out += [(t, c.what, c.text) for c in changes if c.kind == "timetable_out_of_date"]
    return out


def test_a_bus_on_an_older_timetable_ten_minutes_after_valid_from_is_out_of_date() -> None:
    on_v2 = msgspec.structs.replace(TT, timetable=2)
    got = tt_changes([(-60, TT), (0, TT), (599, TT), (600, TT), (700, TT), (800, on_v2)])
    assert got == [
        (600, RAISE, "runs v1, should run v2 since 2027-01-15 08:00 UTC"),
        (800, CLEAR, ""),
    ]
    later = AlarmParams(timetable_late_s=900.0)  # central.toml's alarm_timetable_late_s
    assert [t for t, *_ in tt_changes([(600, TT), (899, TT), (900, TT)], later)] == [900]


def test_a_bus_offline_for_days_on_the_old_timetable_is_out_of_date_too() -> None:
    away = msgspec.structs.replace(TT, online=False, last_seen=T0 - 3 * 86_400)
    got = tt_changes([(0, away), (3 * 86_400, away)])
    assert got == [(3 * 86_400, RAISE, "runs v1, should run v2 since 2027-01-15 08:00 UTC")]
    local = msgspec.structs.replace(away, timetable=None, timetable_source="local")
    assert tt_changes([(601, local)])[0][2].startswith("runs a local bootstrap feed,")
    nothing = msgspec.structs.replace(away, timetable=None)
    assert tt_changes([(601, nothing)])[0][2].startswith("runs no timetable,")


def test_a_timetable_published_at_once_counts_from_when_central_first_saw_it_desired() -> None:
    at_once = msgspec.structs.replace(TT, timetable_valid_from=None)
    got = tt_changes([(100, at_once), (699, at_once), (700, at_once)])
    assert [(t, what) for t, what, _ in got] == [(700, RAISE)]
    # No timetable desired at all: nothing is out of date, whatever the bus runs.
    none = msgspec.structs.replace(TT, timetable_desired=None, timetable_valid_from=None)
    assert tt_changes([(0, none), (10_000, none)]) == []


def test_the_out_of_date_alarm_follows_the_desired_version_and_its_time() -> None:
    v3_later = msgspec.structs.replace(TT, timetable_desired=3, timetable_valid_from=T0 + 3600)
    got = tt_changes([(600, TT), (700, v3_later), (3600 + 600, v3_later)])
    assert [(t, what) for t, what, _ in got] == [(600, RAISE), (700, CLEAR), (4200, RAISE)]
    assert got[-1][2] == "runs v1, should run v3 since 2027-01-15 09:00 UTC"


def test_ingest_raises_timetable_out_of_date_on_central_clock_and_clears_it_when_caught_up(
    central_db: str,
) -> None:
    store = open_store(central_db)
    ingest = Ingest(store)
    ref = TimetableRef(version=2, sha256="a" * 64, size=10, url="http://c/t.zip", valid_from=T0)
    desired = DesiredState(bus="bus-1", version=4, timetable=ref)
    ingest.handle(topics.desired("bus-1"), codec.encode(desired), T0 - 100)

    def report(running: int, t: float) -> None:
        tt = TimetableState(running=running, staged=2, source="central")
        state = ReportedState(bus="bus-1", version=4, t=t, timetable=tt)
        ingest.handle(topics.reported("bus-1"), codec.encode(state), t)

    report(1, T0 - 90)
    birth, death = (Presence(bus="bus-1", online=o, session=1, t=T0 - 80) for o in (True, False))
    ingest.handle(topics.presence("bus-1"), codec.encode(birth), T0 - 80)
    ingest.handle(topics.presence("bus-1"), codec.encode(death), T0 - 70)  # and away for good
    ingest.tick(T0 + 590)
    assert not ingest.buses["bus-1"].entry.online
    assert ingest.alarms.alarms() == []
    ingest.tick(T0 + 610)
    late = [a for a in ingest.alarms.alarms() if a.kind == "timetable_out_of_date"]
    assert [(a.state, a.severity, a.text) for a in late] == [
        (ACTIVE, 2, "runs v1, should run v2 since 2027-01-15 08:00 UTC")
    ]
    store.close()
    # A central restarted meanwhile, and the bus is back on v2: the alarm it left clears.
    store = open_store(central_db)
    ingest = Ingest(store)
    ingest.handle(topics.desired("bus-1"), codec.encode(desired), T0 + 700)
    report(2, T0 + 710)
    ingest.tick(T0 + 720)
    late = [a for a in ingest.alarms.alarms() if a.kind == "timetable_out_of_date"]
    assert [a.state for a in late] == [CLEARED]
    store.close()


def test_every_condition_alarm_a_central_left_open_clears_after_a_restart(central_db: str) -> None:
    db = central_db

    def send(ingest: Ingest, topic: str, body: bytes, now: float) -> None:
        ingest.handle(topic, body, now)

    def drive(ingest: Ingest, t0: float, kmh: float, doors: bool, seq: int) -> None:
        records = [record(t0 + i, kmh, doors=doors, seq=seq + i) for i in range(15)]
        batch = compact.encode_batch(TelemetryBatch(bus="bus-1", records=records))
        send(ingest, topics.telemetry("bus-1"), batch, t0 + 15)

    def report(ingest: Ingest, version: int, t: float, outbox: int, **kw: object) -> None:
        state = ReportedState(bus="bus-1", version=version, t=t, counters={"outbox": outbox}, **kw)  # type: ignore[arg-type]
        send(ingest, topics.reported("bus-1"), codec.encode(state), t)

    ingest = Ingest(open_store(db))
    birth = Presence(bus="bus-1", online=True, session=1, t=T0)
    send(ingest, topics.presence("bus-1"), codec.encode(birth), T0)
    send(ingest, topics.desired("bus-1"), codec.encode(DesiredState(bus="bus-1", version=3)), T0)
    drive(ingest, T0, 95.0, True, 1)  # speeding with a door open
    for i, waiting in enumerate((400, 500, 600)):
        report(ingest, 0, T0 + 16 + i, waiting, rejected_version=3, error="bad")
    ingest.tick(T0 + 20)
    report(ingest, 0, T0 + 150, 600, rejected_version=3, error="bad")
    ingest.tick(T0 + 150)  # online and not running its desired version for minutes
    death = Presence(bus="bus-1", online=False, session=1, t=T0 + 201)
    send(ingest, topics.presence("bus-1"), codec.encode(death), T0 + 201)
    ingest.tick(T0 + 202)
    raised = {"offline", "overspeed", "door_open_moving", "state_rejected", "backlog"}
    raised.add("out_of_sync")
    assert {a.kind for a in ingest.alarms.alarms() if a.state == ACTIVE} == raised
    ingest.store.close()

    # A new central; the bus comes back and every condition has ended.
    ingest = Ingest(open_store(db))
    t = T0 + 1000
    send(ingest, topics.desired("bus-1"), codec.encode(DesiredState(bus="bus-1", version=3)), t)
    birth = Presence(bus="bus-1", online=True, session=2, t=t)
    send(ingest, topics.presence("bus-1"), codec.encode(birth), t)
    drive(ingest, t, 30.0, False, 100)
    report(ingest, 3, t + 16, 0)
    ingest.tick(t + 17)
    left = {a.kind: a.state for a in ingest.alarms.alarms()}
    assert left == dict.fromkeys(raised, CLEARED)
    ingest.store.close()
