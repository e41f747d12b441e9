"""Central's store on both backends: SQLite (a file) and PostgreSQL (a real server, started by
the tests: tests/postgres_helpers.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import psycopg
import pytest

from central.service.ingest import Ingest
from central.store import pg_schema, schema
from central.store.backend import NotPorted, RolledBack
from central.store.db import CentralStore, pending_migrations
from central.store.pg_sql import translate
from central.store.pg_store import PgCentralStore, open_store
from protocols import codec, topics
from protocols.schemas import Event, EventBatch, Position, Scalar, TelemetryBatch, TelemetryRecord
from tests.postgres_helpers import OWNER_PID, PostgresServer, stop_abandoned


def test_a_postgresql_server_starts_answers_and_is_gone_after() -> None:
    with PostgresServer() as server:
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            settings: dict[str, str] = dict(
                conn.execute("SELECT name, setting FROM pg_settings").fetchall()
            )
            assert settings["fsync"] == "on" and settings["synchronous_commit"] == "on"
            pid = conn.info.backend_pid
            # PostgreSQL refuses root: as root, the cluster runs as an unprivileged user.
            owner = server.owner.pw_uid if server.owner is not None else os.geteuid()
            assert _uid_of(pid) == owner
            assert _uid_of(pid) != 0
        directory = server.dir
    assert not directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url(), connect_timeout=5)
    assert not os.path.exists(f"/proc/{pid}")


def test_a_cluster_whose_test_process_died_is_stopped_and_removed_by_the_next() -> None:
    server = PostgresServer().__enter__()
    gone = subprocess.Popen(["true"])  # a process id that has ended
    gone.wait()
    (server.dir / OWNER_PID).write_text(str(gone.pid))  # as if its pytest was killed
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    stop_abandoned()
    assert not server.dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url(), connect_timeout=5)


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_the_store_opens_a_postgresql_url_and_migrates_it(postgres_url: str) -> None:
    store = open_store(postgres_url)
    assert isinstance(store, PgCentralStore)
    assert store.schema_version() == len(pg_schema.MIGRATIONS) == len(schema.MIGRATIONS)
    store.close()
    again = open_store(postgres_url)  # a second start finds it done
    assert isinstance(again, PgCentralStore) and again.schema_version() == len(schema.MIGRATIONS)
    again.close()


def test_both_schemas_define_the_same_tables_columns_keys_and_indexes(
    postgres_url: str, tmp_path: Path
) -> None:
    lite = CentralStore(tmp_path / "central.sqlite")
    pg = open_store(postgres_url)
    assert isinstance(pg, PgCentralStore)
    assert _sqlite_shape(lite) == _postgres_shape(pg)
    assert len(_sqlite_shape(lite)) > 20  # every table is there, not two empty dicts
    lite.close()
    pg.close()


_PG_TYPES = {"TEXT": "text", "INTEGER": "bigint", "REAL": "double precision", "BLOB": "bytea"}


def _sqlite_shape(store: CentralStore) -> dict[str, object]:
    shape: dict[str, object] = {}
    tables = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    for (table,) in store.db.execute(tables).fetchall():
        cols = store.db.execute(f"PRAGMA table_info({table})").fetchall()
        shape[table] = (
            [(c[1], _PG_TYPES[c[2]], bool(c[3]) or c[5] > 0) for c in cols],
            [c[1] for c in sorted(cols, key=lambda c: c[5]) if c[5] > 0],
        )
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    shape["indexes"] = sorted(r[0] for r in store.db.execute(indexes).fetchall())
    triggers = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    shape["triggers"] = sorted(r[0] for r in store.db.execute(triggers).fetchall())
    return shape


def _postgres_shape(store: PgCentralStore) -> dict[str, object]:
    raw = store.pg.conn.raw
    shape: dict[str, object] = {}
    tables = (
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        " AND table_name != 'central_schema' ORDER BY table_name"
    )
    for (table,) in raw.execute(tables).fetchall():
        cols = raw.execute(
            "SELECT column_name, data_type, is_nullable = 'NO' FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        key = raw.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary"
            " ORDER BY array_position(i.indkey, a.attnum)",
            (table,),
        ).fetchall()
        shape[table] = ([tuple(c) for c in cols], [k[0] for k in key])
    indexes = (
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
        " AND indexname NOT LIKE '%_pkey'"
    )
    shape["indexes"] = sorted(r[0] for r in raw.execute(indexes).fetchall())
    triggers = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    shape["triggers"] = sorted(r[0] for r in raw.execute(triggers).fetchall())
    return shape


# -- the telemetry ingest, the same tests on both backends --


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CentralStore]:
    if request.param == "sqlite":
        db = str(tmp_path / "central.sqlite")
    else:
        db = request.getfixturevalue("postgres_url")
    opened = open_store(db)
    assert opened.backend == request.param
    yield opened
    opened.close()


def _batch(bus: str, seqs: Iterable[int], backfill: bool = False) -> bytes:
    records = [
        TelemetryRecord(seq=s, t=1000.0 + s, pos=Position(lat=-16.9, lon=145.7 + s / 1e4))
        for s in seqs
    ]
    return codec.encode(TelemetryBatch(bus=bus, records=records, backfill=backfill))


def _events(bus: str, events: list[tuple[int, str, dict[str, Scalar]]]) -> bytes:
    batch = EventBatch(
        bus=bus, events=[Event(seq=s, t=1000.0 + s, kind=k, data=d) for s, k, d in events]
    )
    return codec.encode(batch)


def test_records_sent_twice_are_stored_once_and_counted_as_duplicates(store: CentralStore) -> None:
    ingest = Ingest(store)
    ingest.handle_many(
        [
            (topics.telemetry("b1"), _batch("b1", range(1, 11))),
            (topics.telemetry("b2"), _batch("b2", [1, 2])),
            (topics.telemetry("b1"), _batch("b1", range(5, 16))),
        ],
        now=2000,
    )
    ingest.handle(topics.telemetry("b1"), _batch("b1", [3, 16]), now=2001)
    assert store.seqs("b1") == list(range(1, 17)) and store.seqs("b2") == [1, 2]
    assert store.count() == 18
    assert ingest.counters["records"] == 18 and ingest.counters["duplicates"] == 7
    assert ingest.counters["errors"] == 0
    row = store.telemetry("b2")[0]
    assert (row["bus"], row["seq"], row["t"], row["lat"], row["backfill"]) == (
        "b2", 1, 1001.0, -16.9, 0,
    )  # fmt: skip


def test_a_statement_failing_on_postgresql_rolls_the_batch_back_and_gives_no_receipt(
    postgres_url: str,
) -> None:
    """On PostgreSQL a failed statement aborts its whole transaction, and COMMIT then answers
    ROLLBACK without an error: the ingest must not receipt what was never stored."""
    store = open_store(postgres_url)
    assert isinstance(store, PgCentralStore)
    raw = store.pg.conn.raw
    raw.execute(
        "CREATE FUNCTION fail_bad() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.bus = 'bad' THEN RAISE EXCEPTION 'no space left (a stand-in)'; END IF;"
        " RETURN NEW; END $$"
    )
    raw.execute(
        "CREATE TRIGGER fail_bad BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION fail_bad()"
    )
    if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raw.commit()
    ingest = Ingest(store)
    batch = [
        (topics.telemetry("b1"), _batch("b1", range(1, 6))),
        (topics.events("bad"), _events("bad", [(1, "door", {"open": True})])),
        (topics.telemetry("b2"), _batch("b2", [1])),
    ]
    with pytest.raises(psycopg.Error):
        ingest.handle_many(batch, now=2000)
    assert ingest.take_receipts() == []
    assert store.seqs("b1") == [] and store.count() == 0
    # The connection is usable again: the next batch is stored and receipted.
    ingest.handle(topics.telemetry("b1"), _batch("b1", range(1, 6)), now=2001)
    assert [(r.bus, r.ranges) for r in ingest.take_receipts()] == [("b1", [(1, 5)])]
    store.close()


def test_a_commit_that_postgresql_turns_into_a_rollback_raises(postgres_url: str) -> None:
    store = open_store(postgres_url)
    with pytest.raises(RolledBack), store.transaction():
        store.db.execute("INSERT INTO bus_groups (name, updated) VALUES ('depot', 1)")
        with contextlib.suppress(psycopg.Error):  # swallowed: the transaction is aborted
            store.db.execute("INSERT INTO bus_groups (name, updated) VALUES ('depot', 2)")
    assert store.db.execute("SELECT COUNT(*) FROM bus_groups").fetchone() == (0,)
    store.close()


def test_receipts_carry_the_ranges_stored_duplicates_included(store: CentralStore) -> None:
    ingest = Ingest(store)
    ingest.handle(topics.telemetry("b1"), _batch("b1", [1, 2, 3, 7, 8]), now=2000)
    ingest.handle(topics.telemetry("b1"), _batch("b1", [2, 3, 4, 20]), now=2001)
    ingest.handle(topics.events("b1"), _events("b1", [(9, "door", {"open": True})]), now=2002)
    [receipt] = ingest.take_receipts()
    # A duplicate is acknowledged again: the bus that resent it lost the first receipt.
    assert (receipt.bus, receipt.ranges) == ("b1", [(1, 4), (7, 9), (20, 20)])
    assert ingest.take_receipts() == []


def test_events_are_stored_once_and_a_command_is_answered_once(store: CentralStore) -> None:
    ingest = Ingest(store)
    # add_command is a sqlite-utils helper, not ported yet: the row as it writes it
    store.db.execute(
        "INSERT INTO commands (id, bus, name, args, sent, expires, status)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("c1", "b1", "reboot", "{}", 1990.0, 2100.0, "sent"),
    )
    ack: dict[str, Scalar] = {"id": "c1", "result": "ok"}
    ingest.handle(topics.events("b1"), _events("b1", [(1, "cmd_ack", ack), (2, "x", {})]), 2000)
    ingest.handle(topics.events("b1"), _events("b1", [(1, "cmd_ack", ack)]), 2001)
    assert ingest.counters["events"] == 2 and ingest.counters["duplicates"] == 1
    assert ingest.counters["command_answers"] == 1  # the resent answer matches nothing
    assert ingest.counters["command_answers_unmatched"] == 1
    assert [(c["id"], c["status"], c["answered"]) for c in store.commands()] == [
        ("c1", "ok", 1001.0)
    ]
    assert ingest.counters["errors"] == 0


def test_a_record_sent_again_after_its_purge_is_not_stored_again(store: CentralStore) -> None:
    ingest = Ingest(store)
    ingest.handle(topics.telemetry("b1"), _batch("b1", range(1, 6)), now=2000)
    with store.transaction():  # what retention does: the rows go, the mark stays
        store.db.execute("DELETE FROM telemetry WHERE bus = ? AND seq <= ?", ("b1", 3))
        store.db.execute(
            "INSERT INTO retention_marks (tbl, bus, seq) VALUES (?, ?, ?)", ("telemetry", "b1", 3)
        )
    ingest.handle(topics.telemetry("b1"), _batch("b1", range(1, 8)), now=2001)
    assert store.seqs("b1") == [4, 5, 6, 7]
    assert ingest.counters["purged_resends"] == 3 and ingest.counters["duplicates"] == 2


def test_the_fleet_and_desired_documents_survive_a_restart(store: CentralStore) -> None:
    ingest = Ingest(store)
    ingest.handle(topics.telemetry("b1"), _batch("b1", range(1, 4)), now=50)
    assert [e.bus for e in ingest.take_dirty()] == ["b1"]
    assert store.put_desired("b1", lambda v: b"doc %d" % v) == 1
    assert store.put_desired("b1", lambda v: b"doc %d" % v) == 2
    store.save_reported("b1", 2, b"\x00reported")
    again = open_store(store.path)
    try:
        assert Ingest(again).buses["b1"].entry.records == 3
        assert again.desired("b1") == (2, b"doc 2")
        assert again.reported("b1") == b"\x00reported"
        assert again.desired_versions() == {"b1": 2}
    finally:
        again.close()


def test_desired_versions_from_two_connections_never_collide(store: CentralStore) -> None:
    """Each write transaction holds the write lock (SQLite's; on PostgreSQL an advisory lock),
    so a read-modify-write of another connection cannot slip between the read and the write."""
    versions: list[int] = []

    def writer() -> None:
        with store.for_thread() as mine:
            versions.extend(mine.put_desired("b1", lambda v: b"%d" % v) for _ in range(25))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 51))
    assert store.desired("b1") == (50, b"50")


# -- what is not ported says so --


def test_centralstore_refuses_a_postgresql_url_with_a_clear_message(postgres_url: str) -> None:
    with pytest.raises(NotPorted, match=r"opens a SQLite file only.*use a SQLite file"):
        CentralStore(postgres_url)
    with pytest.raises(NotPorted):
        pending_migrations(postgres_url)


def test_sqlite_only_sql_on_postgresql_raises_not_ported(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        with pytest.raises(NotPorted, match="PRAGMA"):
            store.db.execute("PRAGMA user_version")
        with pytest.raises(NotPorted, match="json_extract"):
            store.db.execute("SELECT json_extract(data, '$.lat') FROM events")
        with pytest.raises(NotPorted, match="table"):
            store.db.table("commands")  # a sqlite-utils helper
        with pytest.raises(NotPorted, match="lastrowid"):
            store.db.execute("SELECT 1").lastrowid  # noqa: B018 (sqlite3's attribute)
        store.add_command("c1", "b1", "reboot", "{}", 1.0, 2.0)  # ported: plain SQL
        assert [c["id"] for c in store.commands()] == ["c1"]
    finally:
        store.close()


def test_the_translation_keeps_quoted_text_and_rewrites_insert_or_ignore() -> None:
    assert translate("SELECT '?', likes FROM t WHERE a = ? AND b = '5% LIKE'") == (
        "SELECT '?', likes FROM t WHERE a = %s AND b = '5%% LIKE'"
    )
    assert translate("INSERT OR IGNORE INTO t (a, b) VALUES (?, ?)") == (
        "INSERT INTO t (a, b) VALUES (%s, %s) ON CONFLICT DO NOTHING"
    )
    assert translate("UPDATE t SET a = :a WHERE b = :b", named=True) == (
        "UPDATE t SET a = %(a)s WHERE b = %(b)s"
    )
    with pytest.raises(NotPorted, match="LIKE"):
        translate("SELECT 1 FROM t WHERE name LIKE ?")
    # Comments are no SQL: a "?", an apostrophe or a "%" in one changes nothing.
    assert translate("SELECT a -- the bus's ? 5%\nFROM t /* ? ' */ WHERE a = ?") == (
        "SELECT a  \nFROM t   WHERE a = %s"
    )
    assert translate("SELECT '--?' FROM t WHERE a = ?") == "SELECT '--?' FROM t WHERE a = %s"


def test_a_percent_sign_means_modulo_with_or_without_parameters(postgres_url: str) -> None:
    store = open_store(postgres_url)
    assert store.db.execute("SELECT 7 % 2").fetchone() == (1,)
    assert store.db.execute("SELECT ? % 4", [10]).fetchone() == (2,)
    store.close()
