"""Central's ingest against a hostile bus, on a real SQLite file: bounds, receipts, alarm
positions, times, command answers, GTFS-RT (issue 13). The same from outside, through a real
broker: tests/test_hostile_ingest.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from google.transit import gtfs_realtime_pb2 as rt

from central.http.gtfs_rt import SKIPPED
from central.http.server import create_app, serving
from central.service.ingest import RECEIPT_RANGES, Ingest
from central.store import alarms as alarm_db
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.codec import MAX_PAYLOAD
from protocols.errors import CodecError
from protocols.ranges import expand
from protocols.schemas import (
    Alarm,
    DesiredState,
    Event,
    EventBatch,
    FleetEntry,
    JourneyStatus,
    Position,
    ReportedState,
    TelemetryBatch,
    TelemetryRecord,
)

NOW = time.time()  # central's clock in these tests (times are judged against it)
YEAR = 365 * 86_400.0


@pytest.fixture
def ingest(tmp_path: Path) -> Ingest:
    return Ingest(CentralStore(tmp_path / "central.sqlite"))


def raw(doc: dict[str, Any]) -> bytes:
    return msgspec.json.encode(doc)


def batch(bus: str, *records: tuple[int, float], lat: float = -16.9) -> bytes:
    recs = [TelemetryRecord(seq=s, t=t, pos=Position(lat=lat, lon=145.7)) for s, t in records]
    return codec.encode(TelemetryBatch(bus=bus, records=recs))


# -- 1. bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "doc"),
    [
        ("telemetry", {"records": [{"seq": 2**63, "t": 1.0}]}),
        ("telemetry", {"records": [{"seq": 2**53, "t": 1.0}]}),
        ("telemetry", {"records": [{"seq": -1, "t": 1.0}]}),
        ("telemetry", {"records": [{"seq": 1, "t": 1e20}]}),
        ("telemetry", {"records": [{"seq": 1, "t": -1.0}]}),
        ("telemetry", {"records": [{"seq": 1, "t": 1.0, "veh": {"rpm": 1e300}}]}),
        ("events", {"events": [{"seq": 2**63, "t": 1.0, "kind": "x"}]}),
        ("events", {"events": [{"seq": 1, "t": 1.0, "kind": "x", "severity": 2**63}]}),
        ("events", {"events": [{"seq": 1, "t": 1.0, "kind": "x", "severity": 5}]}),
        ("events", {"events": [{"seq": 1, "t": 1.0, "kind": "x", "data": {"n": 2**63}}]}),
        ("presence", {"online": True, "session": 2**63, "t": 1.0}),
        ("presence", {"online": True, "session": 1, "t": 1.0, "offline_after_s": 1e300}),
        ("presence", {"online": True, "session": 1, "t": 1.0, "offline_after_s": 0}),
        ("reported", {"version": 2**63, "t": 1.0}),
        ("reported", {"version": 1, "t": 1.0, "counters": {"outbox": 2**63}}),
        ("reported", {"version": 1, "t": 1.0, "journey": {"t": 1.0, "trip_id": "T",
                                                          "delay_s": 2**40}}),
        ("reported", {"version": 1, "t": 1.0, "journey": {"t": 1.0, "trip_id": "T",
                                                          "stop_sequence": 2**63}}),
        ("desired", {"version": 2**63}),
    ],
    ids=lambda x: str(x)[:60],
)  # fmt: skip
def test_a_number_beyond_its_bound_is_refused_counted_and_changes_nothing(
    ingest: Ingest, kind: str, doc: dict[str, Any]
) -> None:
    topic = topics.bus_topic("b1", topics.Kind[kind.upper()])
    ingest.handle(topic, raw({"v": 1, "bus": "b1", **doc}), now=NOW)
    assert ingest.counters["rejected_CodecError"] == 1
    assert ingest.counters["errors"] == 0
    assert ingest.store.count() == 0 and ingest.store.seqs("b1") == []
    assert ingest.take_receipts() == []
    assert "b1" not in ingest.buses and "b1" not in ingest.offline_after


def test_the_agent_refuses_a_desired_version_of_2_63_at_decoding() -> None:
    with pytest.raises(CodecError):
        codec.decode(DesiredState, raw({"v": 1, "bus": "b1", "version": 2**63}))
    assert codec.decode(DesiredState, raw({"v": 1, "bus": "b1", "version": 2**53})).version


def test_a_silent_bus_that_announced_a_huge_timeout_goes_offline_after_the_default(
    ingest: Ingest,
) -> None:
    birth = raw({"v": 1, "bus": "b1", "online": True, "session": 1, "t": NOW,
                 "offline_after_s": 1e300})  # fmt: skip
    ingest.handle(topics.presence("b1"), birth, now=NOW)
    ingest.handle(topics.telemetry("b1"), batch("b1", (1, NOW)), now=NOW)
    ingest.tick(now=NOW + ingest.offline_after_s + 1)
    assert not ingest.buses["b1"].entry.online
    # The bounds themselves are allowed: a day's timeout, a session of 2^53.
    birth = raw({"v": 1, "bus": "b2", "online": True, "session": 2**53, "t": NOW,
                 "offline_after_s": 86_400})  # fmt: skip
    ingest.handle(topics.presence("b2"), birth, now=NOW)
    assert ingest.buses["b2"].entry.online and ingest.offline_after["b2"] == 86_400


# -- 2. receipts ------------------------------------------------------------------------------


def test_receipts_for_a_gapped_backlog_are_split_small(ingest: Ingest) -> None:
    seqs = list(range(1, 120_000, 2))  # 60,000 ranges
    for i in range(0, len(seqs), 2000):
        records = [TelemetryRecord(seq=s, t=NOW) for s in seqs[i : i + 2000]]
        ingest.handle(
            topics.telemetry("b1"), codec.encode(TelemetryBatch(bus="b1", records=records)), NOW
        )
    receipts = ingest.take_receipts()
    assert len(receipts) == len(seqs) // RECEIPT_RANGES
    assert {r.bus for r in receipts} == {"b1"}
    assert sorted(s for r in receipts for s in expand(r.ranges)) == seqs
    for r in receipts:
        assert len(r.ranges) <= RECEIPT_RANGES
        assert len(codec.encode(r)) <= MAX_PAYLOAD  # what the bus decodes
    assert ingest.take_receipts() == []


# -- 3. alarm positions and duplicate alarms --------------------------------------------------


def emergency(seq: int, t: float, **data: Any) -> bytes:
    event = Event(seq=seq, t=t, kind="emergency", severity=4, data=data)
    return codec.encode(EventBatch(bus="b1", events=[event]))


def test_an_emergency_at_latitude_999_is_raised_without_position_and_can_be_acknowledged(
    ingest: Ingest,
) -> None:
    ingest.handle(topics.events("b1"), emergency(1, NOW, lat=999.0, lon=145.7), now=NOW)
    [alarm] = ingest.alarms.alarms()
    assert (alarm.kind, alarm.lat, alarm.lon) == ("emergency", None, None)
    [(_topic, payload, _retain)] = ingest.alarms.take_outgoing()
    assert codec.decode(Alarm, payload) == alarm  # a dashboard can read it
    ingest.handle(topics.events("b1"), emergency(2, NOW + 9, lat=-16.9, lon=145.7), now=NOW + 9)
    assert ingest.counters["errors"] == 0
    assert [a.id for a in ingest.alarms.alarms()] == [alarm.id]  # latched: the same alarm
    assert ingest.alarms.acknowledge(alarm.id, "eve", "", NOW + 10).state == "closed"


def test_an_alarm_stored_with_a_bad_position_is_readable_and_the_next_raise_does_not_crash(
    tmp_path: Path,
) -> None:
    # What central stored before positions were checked: an open alarm whose document does
    # not validate (built in code, where msgspec does not check).
    store = CentralStore(tmp_path / "central.sqlite")
    bad = Alarm(id="old-1", bus="b1", kind="emergency", severity=4, state="active",
                raised_t=NOW - 60, t=NOW - 60, lat=999.0, lon=145.7)  # fmt: skip
    with store.transaction():
        alarm_db.add_alarm(store, bad, codec.encode(bad).decode())
    with pytest.raises(CodecError):
        codec.decode(Alarm, codec.encode(bad))
    ingest = Ingest(store)
    old = ingest.alarms.get("old-1")
    assert old is not None and old.lat is None
    ingest.handle(topics.events("b1"), emergency(5, NOW, lat=-16.9, lon=145.7), now=NOW)
    assert ingest.counters["errors"] == 0
    assert [a.id for a in ingest.alarms.alarms(open_only=True)] == ["old-1"]
    assert ingest.alarms.acknowledge("old-1", "eve", "", NOW + 1).state == "closed"


def test_an_unreadable_open_alarm_is_replaced_by_the_next_raise_under_its_id(
    tmp_path: Path,
) -> None:
    store = CentralStore(tmp_path / "central.sqlite")
    bad = Alarm(id="old-2", bus="b1", kind="emergency", severity=4, state="active",
                raised_t=NOW - 60, t=NOW - 60)  # fmt: skip
    with store.transaction():
        alarm_db.add_alarm(store, bad, '{"not": "an alarm"}')
    ingest = Ingest(store)
    assert ingest.alarms.get("old-2") is None
    ingest.handle(topics.events("b1"), emergency(5, NOW, lat=-16.9, lon=145.7), now=NOW)
    assert ingest.counters["errors"] == 0
    new = ingest.alarms.get("old-2")
    assert new is not None and new.lat == -16.9 and new.raised_t == NOW


# -- 4. times ---------------------------------------------------------------------------------


def test_a_record_ten_years_ahead_is_stored_but_never_freezes_the_live_position(
    tmp_path: Path,
) -> None:
    db = tmp_path / "central.sqlite"
    ingest = Ingest(CentralStore(db))
    ingest.handle(topics.telemetry("b1"), batch("b1", (1, NOW + 10 * YEAR), lat=-10), now=NOW)
    ingest.handle(topics.telemetry("b1"), batch("b1", (2, NOW + 1), lat=-11), now=NOW + 1)
    entry = ingest.buses["b1"].entry
    assert (entry.t, entry.lat) == (NOW + 1, -11)
    assert ingest.store.seqs("b1") == [1, 2]  # stored: valid per schema
    assert ingest.counters["implausible_time"] == 1
    ingest.take_dirty()
    ingest.store.close()
    # A fleet entry frozen ten years ahead by an older central is thawed by the next record.
    store = CentralStore(db)
    frozen = FleetEntry(bus="b2", online=True, t=NOW + 10 * YEAR, lat=-10, lon=145.7)
    store.save_buses([("b2", True, 1, NOW, codec.encode(frozen).decode())])
    restarted = Ingest(store)
    restarted.handle(topics.telemetry("b2"), batch("b2", (7, NOW + 2), lat=-12), now=NOW + 2)
    assert (restarted.buses["b2"].entry.t, restarted.buses["b2"].entry.lat) == (NOW + 2, -12)
    assert restarted.buses["b1"].entry.lat == -11


def test_an_alarm_from_a_clock_far_ahead_is_raised_now(ingest: Ingest) -> None:
    ingest.handle(topics.events("b1"), emergency(1, NOW + 10 * YEAR), now=NOW)
    [alarm] = ingest.alarms.alarms()
    assert alarm.raised_t == NOW
    assert ingest.counters["implausible_time"] == 1


def parse(body: bytes) -> Any:
    feed = rt.FeedMessage()
    feed.ParseFromString(body)
    return feed


async def test_one_bus_with_impossible_times_or_delays_never_fails_the_city_wide_feeds(
    tmp_path: Path,
) -> None:
    store = CentralStore(tmp_path / "central.sqlite")
    ingest = Ingest(store)
    # Through the ingest: a journey event whose delay GTFS-RT's int32 cannot hold.
    event = Event(seq=1, t=NOW, kind="departed", data={"trip": "T9", "delay_s": 2**40})
    ingest.handle(topics.events("bad-d"), codec.encode(EventBatch(bus="bad-d", events=[event])))
    # And fleet entries as an older central may have saved them (not bounded then).
    entries = [
        FleetEntry(bus="good", online=True, t=NOW, lat=-16.9, lon=145.7, trip_id="T1"),
        FleetEntry(bus="bad-t", online=True, t=1e20, lat=-16.9, lon=145.7, trip_id="T2"),
        FleetEntry(bus="bad-neg", online=True, t=-5.0, lat=-16.9, lon=145.7),
        FleetEntry(bus="bad-d", online=True, t=NOW, lat=-16.9, lon=145.7),
    ]
    journeys = ReportedState(
        bus="good", version=0, t=NOW, journey=JourneyStatus(t=NOW, trip_id="T1", delay_s=60)
    )
    store.save_reported("good", 0, codec.encode(journeys))
    counters: dict[str, int] = {}
    app = create_app(store, fleet=lambda: entries, cache_s=0.0, counters=counters)
    async with serving(app, "127.0.0.1", 0) as (host, port), aiohttp.ClientSession() as http:
        for kind in ("vehicle-positions", "trip-updates", "alerts"):
            async with http.get(f"http://{host}:{port}/gtfs-rt/{kind}") as resp:
                assert resp.status == 200, kind
                feed = parse(await resp.read())
            ids = [e.id for e in feed.entity]
            if kind == "vehicle-positions":
                assert ids == ["bad-d", "good"]
            elif kind == "trip-updates":
                assert ids == ["good"]
                assert feed.entity[0].trip_update.delay == 60
    assert counters[SKIPPED] == 2  # bad-t, bad-neg in vehicle positions


# -- 5. command answers -----------------------------------------------------------------------


def answer(bus: str, cmd_id: str, seq: int) -> bytes:
    event = Event(seq=seq, t=NOW, kind="cmd_ack", data={"id": cmd_id, "result": "ok"})
    return codec.encode(EventBatch(bus=bus, events=[event]))


def test_a_bus_cannot_answer_a_command_sent_to_another_bus(ingest: Ingest) -> None:
    ingest.store.add_command("cmd-1", "b1", "restart", "{}", NOW, NOW + 60)
    ingest.handle(topics.command_ack("b2"), answer("b2", "cmd-1", 1), now=NOW)
    [cmd] = ingest.store.commands()
    assert cmd["status"] == "sent"
    assert ingest.counters["command_answers"] == 0
    assert ingest.counters["command_answers_unmatched"] == 1
    ingest.handle(topics.command_ack("b1"), answer("b1", "cmd-1", 1), now=NOW)
    [cmd] = ingest.store.commands()
    assert cmd["status"] == "ok" and ingest.counters["command_answers"] == 1
