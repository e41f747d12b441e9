"""agent.sqlite: one file, migrated from nothing or from the schema written before migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from onboard.link.mqtt import RawEventBatch, RawTelemetryBatch
from onboard.link.outbox import Outbox
from onboard.store import MIGRATIONS, open_store, schema_version
from protocols import codec
from protocols.schemas import Event, EventBatch, Position, TelemetryBatch, TelemetryRecord

TABLES = {
    "outbox",
    "meta",
    "applied",
    "driver_messages",
    "driver_outgoing",
    "portal_sessions",
    "portal_meta",
    "commands_done",
    "timetable",
}


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}


def test_an_empty_file_gets_every_table_and_the_latest_schema_version(tmp_path: Path) -> None:
    store = open_store(tmp_path / "agent.sqlite")
    assert schema_version(store.db) == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    assert tables(tmp_path / "agent.sqlite") >= TABLES


def test_a_file_of_the_schema_before_migrations_keeps_its_rows_and_numbers_its_bodies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.sqlite"
    # As Outbox, AppliedStore and DriverStore created it before onboard/store.py existed.
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
            " priority INTEGER NOT NULL, created REAL NOT NULL, body BLOB NOT NULL,"
            " stored INTEGER NOT NULL DEFAULT 0);"
            "CREATE INDEX outbox_pending ON outbox (stored, priority, seq);"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);"
            "INSERT INTO meta VALUES ('session', 7);"
            "CREATE TABLE applied (id INTEGER PRIMARY KEY CHECK (id = 1),"
            " version INTEGER NOT NULL, body BLOB NOT NULL);"
            "CREATE TABLE driver_messages (id TEXT PRIMARY KEY, text TEXT NOT NULL,"
            " sent REAL NOT NULL, received REAL NOT NULL, expires REAL NOT NULL, acked REAL);"
            "CREATE TABLE driver_outgoing (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
            " code TEXT NOT NULL, t REAL NOT NULL);"
            "CREATE TABLE commands_done (id TEXT PRIMARY KEY, t REAL);"
            "INSERT INTO driver_messages VALUES ('m1', 'hello', 1, 2, 3, NULL);"
        )
        for _ in range(3):  # bodies written with seq 0 and patched by the link, as before
            body = codec.encode(TelemetryRecord(seq=0, t=5.0, pos=Position(lat=1.0, lon=2.0)))
            conn.execute(
                "INSERT INTO outbox (kind, priority, created, body) VALUES ('telemetry', 2, 5, ?)",
                (body,),
            )
        conn.execute("UPDATE outbox SET stored = 1 WHERE seq = 1")  # stored history

    box = Outbox(path)
    assert schema_version(box.db) == len(MIGRATIONS)
    assert box.next_counter("session") == 8
    assert [codec.decode(TelemetryRecord, p.body).seq for p in box.pending(10)] == [2, 3]
    # History too: central's `resend` puts it back in the queue, sent as stored.
    assert box.requeue_since(0.0) == 1
    assert [codec.decode(TelemetryRecord, p.body).seq for p in box.pending(10)] == [1, 2, 3]
    assert box.put("telemetry", lambda seq: b"%d" % seq) == 4
    texts = box.db.execute("SELECT text FROM driver_messages").fetchall()
    assert texts == [("hello",)]
    box.close()
    assert tables(path) >= TABLES


def test_opening_again_runs_no_migration_twice(tmp_path: Path) -> None:
    open_store(tmp_path / "agent.sqlite").close()
    again = open_store(tmp_path / "agent.sqlite")
    assert again.migrate() == len(MIGRATIONS)
    again.close()


def test_a_nested_transaction_rolls_back_alone_and_the_outer_one_commits(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "agent.sqlite")
    with box.transaction():
        box.append("event", b"kept")
        with pytest.raises(RuntimeError), box.transaction():
            box.append("event", b"lost")
            raise RuntimeError
    assert [p.body for p in box.pending(10)] == [b"kept"]
    box.close()


def test_the_outbox_numbers_a_record_before_it_is_encoded(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "agent.sqlite")
    box.append("event", b"x")
    seq = box.put("telemetry", lambda n: codec.encode(TelemetryRecord(seq=n, t=1.0)))
    (row,) = box.pending(1, kind="telemetry")
    assert seq == 2 and codec.decode(TelemetryRecord, row.body).seq == 2
    box.close()


def test_batches_of_stored_bodies_are_the_bytes_of_the_schema_batches() -> None:
    records = [TelemetryRecord(seq=i, t=float(i), pos=Position(lat=1.5, lon=i)) for i in (4, 9)]
    raw = [msgspec.Raw(codec.encode(r)) for r in records]
    want = codec.encode(TelemetryBatch(bus="b1", records=records, backfill=True))
    assert codec.encode(RawTelemetryBatch(bus="b1", records=raw, backfill=True)) == want
    events = [Event(seq=3, t=1.0, kind="door_open", data={"door": 1})]
    raw = [msgspec.Raw(codec.encode(e)) for e in events]
    assert codec.encode(RawEventBatch(bus="b1", events=raw)) == codec.encode(
        EventBatch(bus="b1", events=events)
    )
