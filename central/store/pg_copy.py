"""Central's database copied from SQLite into PostgreSQL, table by table (issue 15).

`copy_to_postgres` fills an empty, migrated PostgreSQL database (pg_store.open_store) with every
row of a SQLite one at the same schema version, through COPY: what bench/reports_month.py
uses to time the reports on both backends on the same month, and the way a city moves a
SQLite central onto PostgreSQL (deploy/postgresql.md). The tables' own triggers are off
during the copy, in its one transaction: the report tables kept by triggers (play_hours) and
the purge marks are copied as they are, not computed again from the copied rows. A VACUUM
(FREEZE, ANALYZE) of every table follows, as after any bulk load.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from central.store.db import CentralStore
from central.store.pg_store import PgCentralStore

__all__ = ["copy_to_postgres", "database_bytes"]

ROWS_PER_REPORT = 1_000_000  # progress every this many rows of a table


def copy_to_postgres(
    source: CentralStore,
    target: PgCentralStore,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, int]:
    """Copy every row of `source` (SQLite) into `target` (PostgreSQL, migrated, every table
    empty) in one transaction; returns the rows copied per table. Nothing is copied when the
    schema versions differ or a target table has rows."""
    if source.backend != "sqlite":
        raise ValueError("the source of a copy is a SQLite database")
    version = int(source.db.execute("PRAGMA user_version").fetchone()[0])
    if version != target.schema_version():
        raise ValueError(f"schema versions differ: SQLite {version}, PostgreSQL "
                         f"{target.schema_version()}")  # fmt: skip
    tables = [
        str(r[0])
        for r in source.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            " ORDER BY name"
        )
    ]
    raw = target.pg.conn.raw
    copied: dict[str, int] = {}
    with raw.transaction():
        for table in tables:
            if raw.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                raise ValueError(f"PostgreSQL's {table} has rows: the target must be empty")
            raw.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for table in tables:
            columns = [str(r[1]) for r in source.db.execute(f"PRAGMA table_info({table})")]
            names = ", ".join(columns)
            began, n = time.perf_counter(), 0
            with raw.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in source.db.conn.execute(f"SELECT {names} FROM {table}"):
                    copy.write_row(row)
                    n += 1
                    if n % ROWS_PER_REPORT == 0:
                        progress(f"{table}: {n:,} rows, {time.perf_counter() - began:.0f} s")
            copied[table] = n
            if n:
                progress(f"{table}: {n:,} rows copied in {time.perf_counter() - began:.1f} s")
        for table in tables:
            raw.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        # An identity column continues after the copied ids, as SQLite's INTEGER PRIMARY KEY.
        identities = raw.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND is_identity = 'YES'"
        ).fetchall()
        for table, column in identities:
            raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )
    # As after any bulk load: the planner's statistics, the visibility map (index-only scans,
    # such as a count of one kind of event, read no table pages only once it is set) and the
    # rows frozen now rather than by an anti-wraparound vacuum of the whole load later on.
    progress("VACUUM (FREEZE, ANALYZE)")
    began = time.perf_counter()
    for table in tables:
        raw.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
    progress(f"vacuumed in {time.perf_counter() - began:.1f} s")
    return copied


def database_bytes(store: PgCentralStore) -> int:
    """The size of the store's database on the server's disk."""
    row = store.pg.conn.raw.execute("SELECT pg_database_size(current_database())").fetchone()
    return 0 if row is None else int(row[0])
