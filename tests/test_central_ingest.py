"""Central's ingest on a real SQLite file and on PostgreSQL: exactly once, stale presence,
garbage counted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.service.ingest import Ingest
from central.store.db import CentralStore
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.schemas import (
    DesiredState,
    Position,
    Presence,
    ReportedState,
    TelemetryBatch,
    TelemetryRecord,
    TimetableRef,
    TimetableState,
)


@pytest.fixture
def ingest(central_db: str) -> Ingest:
    """The tests taking it run on both backends (SQLite and PostgreSQL)."""
    return Ingest(open_store(central_db), offline_after_s=30)


def batch(bus: str, seqs: range, backfill: bool = False) -> bytes:
    records = [
        TelemetryRecord(seq=s, t=1000.0 + s, pos=Position(lat=-16.9, lon=145.7 + s / 1e4))
        for s in seqs
    ]
    return codec.encode(TelemetryBatch(bus=bus, records=records, backfill=backfill))


def test_a_record_sent_twice_is_stored_once(ingest: Ingest) -> None:
    ingest.handle(topics.telemetry("b1"), batch("b1", range(1, 11)), now=2000)
    ingest.handle(topics.telemetry("b1"), batch("b1", range(5, 16)), now=2001)
    assert ingest.store.seqs("b1") == list(range(1, 16))
    assert ingest.counters["records"] == 15
    assert ingest.counters["duplicates"] == 6


def test_the_fleet_entry_follows_the_latest_position_not_backfill(ingest: Ingest) -> None:
    ingest.handle(topics.telemetry("b1"), batch("b1", range(10, 12)), now=2000)
    ingest.handle(topics.telemetry("b1"), batch("b1", range(1, 5), backfill=True), now=2001)
    entry = ingest.buses["b1"].entry
    assert entry.t == 1011.0 and entry.online and entry.records == 6


def test_a_stale_death_after_a_newer_birth_is_ignored(ingest: Ingest) -> None:
    def presence(online: bool, session: int) -> bytes:
        return codec.encode(Presence(bus="b1", online=online, session=session, t=1))

    ingest.handle(topics.presence("b1"), presence(True, 2), now=10)
    ingest.handle(topics.presence("b1"), presence(False, 1), now=11)  # the old session's will
    assert ingest.buses["b1"].entry.online is True
    assert ingest.counters["stale_presence"] == 1
    ingest.handle(topics.presence("b1"), presence(False, 2), now=12)
    assert ingest.buses["b1"].entry.online is False


def test_a_silent_bus_goes_offline_after_its_timeout(ingest: Ingest) -> None:
    ingest.handle(topics.telemetry("b1"), batch("b1", range(1, 2)), now=100)
    ingest.tick(now=120)
    assert ingest.buses["b1"].entry.online
    ingest.tick(now=131)
    assert not ingest.buses["b1"].entry.online


def test_a_bus_cannot_send_telemetry_in_another_bus_name(ingest: Ingest) -> None:
    ingest.handle(topics.telemetry("b1"), batch("b2", range(1, 3)), now=1)
    assert ingest.store.count() == 0
    assert ingest.counters["rejected_BusMismatch"] == 1


def test_fleet_state_survives_a_restart_of_central(central_db: str) -> None:
    first = Ingest(open_store(central_db))
    first.handle(topics.telemetry("b1"), batch("b1", range(1, 4)), now=50)
    first.take_dirty()
    first.store.close()
    second = Ingest(open_store(central_db))
    assert second.buses["b1"].entry.records == 3


@settings(max_examples=300)
@given(
    topic=st.sampled_from(
        [
            topics.telemetry("b1"),
            topics.presence("b1"),
            topics.reported("b1"),
            "busfleet/v1/bus/b1/zzz",
            "x/y",
        ]
    ),
    payload=st.binary(max_size=200),
)
def test_garbage_payloads_are_counted_and_never_raise(topic: str, payload: bytes) -> None:
    # SQLite only: a store per generated example, in memory (nothing reaches the database).
    ingest = Ingest(CentralStore(":memory:"))
    ingest.handle(topic, payload, now=1)
    assert ingest.counters["messages"] == 1
    assert ingest.store.count() == 0
    if topic.endswith(("telemetry", "presence", "reported")):
        assert ingest.counters["rejected"] == 1


def test_a_desired_document_another_worker_wrote_moves_the_fleet_entrys_version(
    ingest: Ingest,
) -> None:
    ingest.handle(topics.telemetry("b1"), batch("b1", range(1, 3)), now=2000)
    ingest.handle(topics.desired("b1"), codec.encode(DesiredState(bus="b1", version=7)), 2001)
    [entry] = [e for e in ingest.take_dirty() if e.bus == "b1"]
    assert entry.desired_version == 7
    # A document that names another bus than its topic is a lie, counted, and changes nothing.
    ingest.handle(topics.desired("b1"), codec.encode(DesiredState(bus="b2", version=9)), 2002)
    assert all(e.desired_version != 9 for e in ingest.take_dirty())
    assert ingest.counters["rejected"] >= 1


def test_the_fleet_entry_shows_the_timetable_wanted_and_the_one_the_bus_runs(
    ingest: Ingest,
) -> None:
    ref = TimetableRef(version=4, sha256="a" * 64, size=10, url="http://c/t", valid_from=5000.0)
    ingest.handle(
        topics.desired("b1"), codec.encode(DesiredState(bus="b1", version=2, timetable=ref)), 2000
    )
    state = TimetableState(running=3, staged=4, source="central", error="hash mismatch")
    reported = ReportedState(bus="b1", version=2, t=2001.0, timetable=state)
    ingest.handle(topics.reported("b1"), codec.encode(reported), 2001)
    [entry] = [e for e in ingest.take_dirty() if e.bus == "b1"]
    assert (entry.timetable_desired, entry.timetable_valid_from) == (4, 5000.0)
    assert (entry.timetable, entry.timetable_staged, entry.timetable_source) == (3, 4, "central")
    assert entry.timetable_error == "hash mismatch"
