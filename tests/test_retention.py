"""Retention: each kind kept its days, purged in small transactions, never stored twice."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker
from busfleet.cli import main
from central.config import CentralConfig, CentralConfigError, parse_central_config
from central.retention import DAY_S, RetentionPolicy, plan, purge
from central.service.ingest import Ingest
from central.service.retention_task import RetentionTask
from central.service.service import CentralService
from central.store import alarms as alarm_db
from central.store.claim import service_claim
from central.store.db import CentralStore
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.ranges import expand
from protocols.schemas import (
    Alarm,
    Event,
    EventBatch,
    Position,
    TelemetryBatch,
    TelemetryRecord,
    Vehicle,
)

NOW = 1_700_000_000.0  # years ago: the commands, on today's clock, find all of it old
OLD = NOW - 500 * DAY_S  # past every default retention
MIDDLE = NOW - 60 * DAY_S  # positions gone (30 d), vehicle data kept (90 d)
NEW = NOW - 1 * DAY_S
SPECIAL = {"plays": "play", "feedback": "passenger_feedback", "portal_stats": "portal_stats"}


def telemetry(bus: str, seqs: range, t: float) -> bytes:
    records = [
        TelemetryRecord(
            seq=s, t=t + s, pos=Position(lat=-16.9, lon=145.7), veh=Vehicle(speed_kmh=30.0)
        )
        for s in seqs
    ]
    return codec.encode(TelemetryBatch(bus=bus, records=records))


def events(bus: str, seqs: range, t: float, kind: str) -> bytes:
    return codec.encode(
        EventBatch(bus=bus, events=[Event(seq=s, t=t + s, kind=kind) for s in seqs])
    )


def feed(ingest: Ingest, bus: str = "b1") -> None:
    """Per bus: telemetry 1-3 old, 4-5 middle, 6-7 new; per event kind two old, one new."""
    ingest.handle(topics.telemetry(bus), telemetry(bus, range(1, 4), OLD), now=OLD + 10)
    ingest.handle(topics.telemetry(bus), telemetry(bus, range(4, 6), MIDDLE), now=MIDDLE + 10)
    ingest.handle(topics.telemetry(bus), telemetry(bus, range(6, 8), NEW), now=NEW + 10)
    seq = 100
    for kind in ("stop_arrival", *SPECIAL.values()):
        ingest.handle(topics.events(bus), events(bus, range(seq, seq + 2), OLD, kind), OLD + 10)
        ingest.handle(topics.events(bus), events(bus, range(seq + 2, seq + 3), NEW, kind), NEW)
        seq += 10
    ingest.take_receipts()


def kinds(store: CentralStore) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for row in store.db.query("SELECT kind, seq FROM events ORDER BY seq"):
        out.setdefault(row["kind"], []).append(row["seq"])
    return out


def positions(store: CentralStore) -> dict[int, bool]:
    """seq -> whether the row still holds a position."""
    return {r["seq"]: r["lat"] is not None for r in store.telemetry("b1")}


@pytest.fixture
def ingest(central_db: str) -> Ingest:
    """The tests taking it run on both backends (SQLite and PostgreSQL)."""
    ingest = Ingest(open_store(central_db))
    feed(ingest)
    return ingest


def purge_all(store: CentralStore, policy: RetentionPolicy, batch: int = 5000) -> dict[str, int]:
    removed: dict[str, int] = {}
    for kind, rows in purge(store, policy, NOW, batch):
        removed[kind] = removed.get(kind, 0) + rows
    return removed


def test_old_rows_of_each_kind_go_and_new_ones_stay(ingest: Ingest) -> None:
    store = ingest.store
    store.db.execute(  # what the proof-of-play report reads, copied from the play events
        "INSERT INTO plays SELECT bus, seq, t, 'ad', 'r1', 10 FROM events WHERE kind = 'play'"
    )
    removed = purge_all(store, RetentionPolicy.from_config(CentralConfig()))
    assert positions(store) == {4: False, 5: False, 6: True, 7: True}
    assert [r["speed_kmh"] for r in store.telemetry("b1")] == [30.0] * 4, "vehicle data kept"
    assert kinds(store) == {
        "stop_arrival": [102],
        "play": [112],
        "passenger_feedback": [122],
        "portal_stats": [132],
    }
    assert [r[0] for r in store.db.execute("SELECT seq FROM plays")] == [112]
    # positions: 3 old rows and the 2 middle ones cleared, then the 3 old rows deleted
    assert removed == {
        "positions": 5,
        "vehicle": 3,
        "events": 2,
        "plays": 2,
        "feedback": 2,
        "portal_stats": 2,
    }


def test_a_kind_set_to_zero_is_kept_forever(ingest: Ingest) -> None:
    config = dataclasses.replace(
        CentralConfig(), retention_vehicle_days=0, retention_feedback_days=0
    )
    purge_all(ingest.store, RetentionPolicy.from_config(config))
    assert ingest.store.seqs("b1") == [1, 2, 3, 4, 5, 6, 7], "no telemetry row deleted"
    assert positions(ingest.store) == {i: i > 5 for i in range(1, 8)}, "positions still cleared"
    assert kinds(ingest.store)["passenger_feedback"] == [120, 121, 122]
    assert kinds(ingest.store)["portal_stats"] == [132]


def test_a_dry_run_counts_what_would_go_and_changes_nothing(ingest: Ingest) -> None:
    policy = RetentionPolicy.from_config(CentralConfig())
    before = (ingest.store.telemetry("b1"), kinds(ingest.store))
    expired = {e.kind: e for e in plan(ingest.store, policy, NOW)}
    assert (ingest.store.telemetry("b1"), kinds(ingest.store)) == before
    assert {k: e.rows for k, e in expired.items()} == {
        "positions": 5,
        "vehicle": 3,
        "events": 2,
        "plays": 2,
        "feedback": 2,
        "portal_stats": 2,
    }
    assert (expired["positions"].oldest, expired["positions"].newest) == (OLD + 1, MIDDLE + 5)
    assert (expired["plays"].oldest, expired["plays"].newest) == (OLD + 110, OLD + 111)
    assert purge_all(ingest.store, policy) == {k: e.rows for k, e in expired.items()}


def test_the_dry_run_command_prints_each_kind_and_deletes_nothing(
    ingest: Ingest, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest.store.close()
    db = ingest.store.path
    assert main(["central", "retention", "--db", db, "--dry-run"]) == 0
    out = capsys.readouterr().out
    for kind in ("positions", "vehicle", "events", "plays", "feedback", "portal_stats"):
        assert any(line.split()[0] == kind for line in out.splitlines()), kind
    store = open_store(db)
    assert store.seqs("b1") == [1, 2, 3, 4, 5, 6, 7]  # nothing changed
    assert len(store.db.execute("SELECT * FROM events").fetchall()) == 12


def test_the_purge_command_refuses_while_a_service_runs_and_purges_when_none_does(
    ingest: Ingest, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest.store.close()
    db = ingest.store.path
    with service_claim(db):
        assert main(["central", "retention", "--db", db]) == 2
    assert "purges on its own schedule" in capsys.readouterr().err
    assert open_store(db).seqs("b1") == [1, 2, 3, 4, 5, 6, 7]
    assert main(["central", "retention", "--db", db]) == 0  # now: everything is years old
    assert "vehicle: 7 purged" in capsys.readouterr().out
    assert open_store(db).seqs("b1") == []


def test_a_purge_is_small_transactions_a_batch_of_two_on_seven_rows_is_four(
    tmp_path: Path,
) -> None:
    # SQLite only: counts the COMMITs with sqlite3's trace callback.
    store = CentralStore(tmp_path / "central.sqlite")
    ingest = Ingest(store)
    ingest.handle(topics.events("b1"), events("b1", range(1, 8), OLD, "stop_arrival"), OLD)
    commits = []
    store.db.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else 0)
    steps = list(purge(store, RetentionPolicy({"events": 90}), NOW, 2))
    assert steps == [("events", 2), ("events", 2), ("events", 2), ("events", 1)]
    assert len(commits) == 4
    assert kinds(store) == {}


def test_a_purged_record_sent_again_is_a_duplicate_not_stored_twice(ingest: Ingest) -> None:
    purge_all(ingest.store, RetentionPolicy.from_config(CentralConfig()))
    # A dispatcher's `resend` (or a lost receipt): the bus sends everything again.
    ingest.counters.clear()
    ingest.handle(topics.telemetry("b1"), telemetry("b1", range(1, 8), OLD), now=NOW)
    ingest.handle(topics.events("b1"), events("b1", range(100, 103), OLD, "stop_arrival"), NOW)
    assert ingest.store.seqs("b1") == [4, 5, 6, 7]
    assert kinds(ingest.store)["stop_arrival"] == [102]
    assert ingest.counters["records"] == 0
    assert ingest.counters["events"] == 0
    # 1-3 and 100-101 were purged, 4-7 and 102 are stored: told apart in the counters
    assert ingest.counters["purged_resends"] == 5
    assert ingest.counters["duplicates"] == 5
    receipts = {r.bus: expand(r.ranges) for r in ingest.take_receipts()}
    assert receipts == {"b1": [1, 2, 3, 4, 5, 6, 7, 100, 101, 102]}, "the bus may forget them"
    # A record above the purged ones is new, whatever its age.
    ingest.handle(topics.telemetry("b1"), telemetry("b1", range(8, 9), OLD), now=NOW)
    assert ingest.store.seqs("b1") == [4, 5, 6, 7, 8]


def test_a_row_that_arrived_recently_is_kept_whatever_its_clock_said(central_db: str) -> None:
    ingest = Ingest(open_store(central_db))
    ingest.handle(topics.telemetry("b1"), telemetry("b1", range(1, 3), 0.0), now=NEW)  # 1970
    located = Event(seq=1, t=0.0, kind="gps_lost", data={"lat": -16.9, "lon": 145.7})
    ingest.handle(topics.events("b1"), codec.encode(EventBatch(bus="b1", events=[located])), NEW)
    removed = purge_all(ingest.store, RetentionPolicy.from_config(CentralConfig()))
    assert removed == {}
    assert ingest.store.seqs("b1") == [1, 2], "a wrong clock does not purge fresh rows"
    assert positions(ingest.store) == {1: True, 2: True}, "nor clear their positions"
    assert "lat" in event_data(ingest.store, 1)


async def test_the_task_purges_at_start_and_on_its_schedule(central_db: str) -> None:
    store = open_store(central_db)
    ingest = Ingest(store)
    now = time.time()
    old = now - 200 * DAY_S
    ingest.handle(topics.events("b1"), events("b1", range(1, 4), old, "x"), old)
    config = dataclasses.replace(CentralConfig(), retention_every_s=0.05)
    task = RetentionTask(store, config)
    task.pause_s = 0.0
    running = asyncio.create_task(task.run())
    try:
        await until(lambda: task.counters["retention_purged_events"] == 3, "the first purge")
        later = time.time() - 200 * DAY_S
        ingest.handle(topics.events("b1"), events("b1", range(4, 6), later, "x"), later)
        await until(lambda: task.counters["retention_purged_events"] == 5, "a scheduled purge")
        assert task.counters["retention_runs"] >= 2
        assert kinds(store) == {}
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_the_service_purges_and_says_so_in_its_stats(
    mosquitto: Broker, central_db: str
) -> None:
    db = central_db
    ingest = Ingest(open_store(db))
    old = time.time() - 200 * DAY_S
    ingest.handle(topics.telemetry("b1"), telemetry("b1", range(1, 4), old), now=old)
    ingest.store.close()
    config = dataclasses.replace(
        CentralConfig(), db=str(db), mqtt_port=mosquitto.port, fleet_publish_s=0.1
    )
    service = CentralService(config)
    service.retention.pause_s = 0.0
    stats: list[dict[str, Any]] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = lambda _c, _u, m: stats.append(json.loads(m.payload))
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe(topics.central_stats(), qos=0)
    client.loop_start()
    task = asyncio.create_task(service.run(), name="central")
    try:
        await until(
            lambda: any(s["counters"].get("retention_purged_vehicle") == 3 for s in stats),
            "stats with the purge",
        )
        assert service.store.seqs("b1") == []
    finally:
        client.loop_stop()
        client.disconnect()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(
    "text",
    [
        "retention_events_days = -1",
        "retention_positions_days = 100",  # longer than the vehicle data's 90: rows go first
        "retention_positions_days = 0",  # forever, yet the rows go after 90 days
        "retention_batch_rows = 0",
    ],
)
def test_retention_that_cannot_be_honoured_is_refused(text: str) -> None:
    with pytest.raises(CentralConfigError, match="retention"):
        parse_central_config(f"[central]\n{text}\n")


def test_the_store_commits_with_synchronous_full_on_every_connection(tmp_path: Path) -> None:
    """A receipt follows the commit at once: the commit must be on disk (FULL = 2). SQLite
    only: a PRAGMA (PostgreSQL's synchronous_commit is the server's setting)."""
    store = CentralStore(tmp_path / "central.sqlite")
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2
    with store.for_thread() as other:
        assert other.db.execute("PRAGMA synchronous").fetchone()[0] == 2


async def until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_a_file_that_is_no_central_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.sqlite"
    other.write_bytes(b"not a database at all" * 100)
    assert main(["central", "retention", "--db", str(other), "--dry-run"]) == 2
    assert "other.sqlite" in capsys.readouterr().err
    assert main(["central", "retention", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()


def event_data(store: CentralStore, seq: int, bus: str = "b1") -> dict[str, Any]:
    row = store.db.execute("SELECT data FROM events WHERE bus = ? AND seq = ?", (bus, seq))
    data: dict[str, Any] = json.loads(row.fetchone()[0])
    return data


def located(seq: int, t: float, kind: str, **data: Any) -> Event:
    return Event(seq=seq, t=t, kind=kind, data={"lat": -16.92, "lon": 145.77, **data})


def alarm(alarm_id: str, state: str, t: float) -> Alarm:
    return Alarm(
        id=alarm_id, bus="b1", kind="overspeed", subject=alarm_id, severity=3, state=state,
        raised_t=t, t=t, lat=-16.92, lon=145.77,
    )  # fmt: skip


def test_positions_in_events_and_closed_alarms_are_cleared_after_the_positions_days(
    central_db: str,
) -> None:
    """The agent puts where the bus was into play, gps_lost and driver events, central into
    alarms: kept longer than telemetry's positions, they must not keep the positions."""
    store = open_store(central_db)
    ingest = Ingest(store)
    batch = [
        located(1, MIDDLE, "play", item="ad"),  # plays are kept 400 days, positions 30
        located(2, MIDDLE, "gps_lost", reason="silent"),  # events 90 days
        located(3, MIDDLE, "driver_message", code="late"),
        located(4, NEW, "play", item="ad"),  # within the positions' days
        Event(seq=5, t=MIDDLE, kind="stop_arrival", data={"stop": "s1"}),  # no position
    ]
    ingest.handle(topics.events("b1"), codec.encode(EventBatch(bus="b1", events=batch)), MIDDLE)
    ingest.handle(topics.events("b1"), events("b1", range(6, 7), NEW, "play"), NEW)
    for a in (alarm("closed-old", "closed", MIDDLE), alarm("open-old", "active", MIDDLE),
              alarm("closed-new", "closed", NEW)):  # fmt: skip
        assert alarm_db.add_alarm(store, a, codec.encode(a).decode())
    policy = RetentionPolicy.from_config(CentralConfig())
    expired = {e.kind: e for e in plan(store, policy, NOW)}
    assert expired["positions"].rows == 4  # three events, one alarm
    assert purge_all(store, policy) == {"positions": 4}

    assert event_data(store, 1) == {"item": "ad"}, "the proof of play stays, not where"
    assert event_data(store, 2) == {"reason": "silent"}
    assert event_data(store, 3) == {"code": "late"}
    assert event_data(store, 4)["lat"] == -16.92
    assert event_data(store, 5) == {"stop": "s1"}
    bodies = {a.id: a for a in map(alarm_from_store(store), ("closed-old", "open-old",
                                                              "closed-new"))}  # fmt: skip
    assert (bodies["closed-old"].lat, bodies["closed-old"].state) == (None, "closed")
    assert bodies["open-old"].lat == -16.92, "an alarm still open keeps where it is"
    assert bodies["closed-new"].lat == -16.92
    assert purge_all(store, policy) == {}, "cleared rows are not found again"


def alarm_from_store(store: CentralStore) -> Callable[[str], Alarm]:
    def read(alarm_id: str) -> Alarm:
        body = alarm_db.alarm_body(store, alarm_id)
        assert body is not None
        return codec.decode(Alarm, body.encode())

    return read


def test_clearing_positions_reads_only_the_rows_holding_one(tmp_path: Path) -> None:
    """Every query of the positions step searches the index of the rows still holding one:
    not a scan, nor a walk down the time index through every old row already cleared.
    SQLite only: sqlite3's trace callback and SQLite's query plans."""
    store = CentralStore(tmp_path / "central.sqlite")
    ingest = Ingest(store)
    feed(ingest)
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    purge_all(store, RetentionPolicy({"positions": 30}))
    plan(store, RetentionPolicy({"positions": 30}), NOW)
    store.db.conn.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    tables = {t for s in selects for t in ("telemetry", "events", "alarms") if f"FROM {t}" in s}
    assert tables == {"telemetry", "events", "alarms"}
    for sql in selects:
        steps = [r[3] for r in store.db.execute(f"EXPLAIN QUERY PLAN {sql}")]
        table = next(t for t in tables if f"FROM {t}" in sql)
        assert steps == [f"SEARCH {table} USING INDEX {table}_positions (t<?)"], sql


@pytest.mark.parametrize("kind", ["events", "plays", "feedback", "portal_stats"])
def test_a_purge_mark_drops_only_records_of_its_own_retention_kind(
    central_db: str, kind: str
) -> None:
    """A late record of another kind, below a purged one's sequence number, is still stored."""
    store = open_store(central_db)
    ingest = Ingest(store)
    event_kind = SPECIAL.get(kind, "stop_arrival")
    ingest.handle(topics.events("b1"), events("b1", range(10, 11), OLD - 10, event_kind), OLD)
    assert purge_all(store, RetentionPolicy({kind: 90})) == {kind: 1}
    ingest.counters.clear()
    late = NOW - 10 * DAY_S  # created before seq 10's purge, within every kind's days
    for other in ("stop_arrival", *SPECIAL.values()):
        ingest.handle(topics.events("b1"), events("b1", range(5, 6), late, other), now=NOW)
        stored = 5 in kinds(store).get(other, [])
        assert stored is (other != event_kind), other
        store.db.execute("DELETE FROM events WHERE seq = 5")
    assert ingest.counters["purged_resends"] == 1
    assert ingest.counters["events"] == 3
    assert ingest.counters["duplicates"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "retention_events_days = true",  # TOML's true, which Python takes for 1 day
        "retention_feedback_days = false",  # false is no 0 (forever) either
        "retention_events_days = 1_000_000",
        "retention_every_s = nan",  # asyncio.sleep(nan) returns at once: a busy loop
        "retention_every_s = inf",
        "retention_every_s = 1",
        "retention_every_s = 1e9",
        "retention_batch_rows = 10",
        "retention_batch_rows = 10_000_000",
    ],
)
def test_retention_settings_that_are_no_sensible_number_are_refused(text: str) -> None:
    with pytest.raises(CentralConfigError, match=r"central\.retention_\w+ must be"):
        parse_central_config(f"[central]\n{text}\n")


async def test_a_locked_database_stops_a_purge_not_the_task(tmp_path: Path) -> None:
    """An import holding the write lock past the busy timeout: counted, tried again. SQLite
    only: its busy timeout (on PostgreSQL a purge waits for the write lock, no timeout)."""
    db = tmp_path / "central.sqlite"
    store = CentralStore(db)
    ingest = Ingest(store)
    old = time.time() - 200 * DAY_S
    ingest.handle(topics.events("b1"), events("b1", range(1, 4), old, "x"), old)
    store.db.execute("PRAGMA busy_timeout = 50")
    importer = sqlite3.connect(db, isolation_level=None)
    importer.execute("BEGIN IMMEDIATE")
    task = RetentionTask(store, dataclasses.replace(CentralConfig(), retention_every_s=0.05))
    task.pause_s = 0.0
    running = asyncio.create_task(task.run())
    try:
        await until(lambda: task.counters["retention_errors"] >= 2, "purges failing on the lock")
        assert not running.done(), "the task goes on"
        assert len(kinds(store)["x"]) == 3
        importer.execute("COMMIT")
        await until(lambda: task.counters["retention_purged_events"] == 3, "the purge after it")
        assert kinds(store) == {}
    finally:
        importer.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_command_leaves_an_sqlite_file_that_is_not_centrals_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    other = tmp_path / "notes.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    argv = ["central", "retention", "--db", str(other), *(["--dry-run"] if dry_run else [])]
    assert main(argv) == 2
    assert "notes.sqlite is not central's database" in capsys.readouterr().err
    assert other.read_bytes() == before, "no table created, no journal mode changed"
