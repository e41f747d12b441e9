"""Writing an imported GTFS feed into central's store (the tables of migration 4).

A feed replaces the previous one whole, in one transaction (`replacing`): readers see the
old timetable or the new one, never a mix, and a failed import leaves the old one in place.
Rows come from the pure checkers of `protocols.gtfs` as tuples in the tables' column order
and go straight into `executemany`, so millions of stop times need neither memory nor
minutes. The rules (what is an error) are central/gtfs_import.py's.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from central.store.backend import Dialect, dialect
from central.store.db import CentralStore

__all__ = ["TABLES", "FeedWriter", "replacing"]

# Emptied before a feed is loaded; children before parents.
TABLES = (
    "gtfs_stop_times",
    "gtfs_shapes",
    "gtfs_trips",
    "gtfs_calendar_dates",
    "gtfs_calendar",
    "gtfs_stops",
    "gtfs_routes",
    "gtfs_agency",
    "gtfs_feed",
)


class FeedWriter:
    """Inserts into the GTFS tables of one transaction (see `replacing`)."""

    def __init__(self, store: CentralStore) -> None:
        self.conn = store.db.conn
        self.dialect = dialect(store)
        # Each table's width from the schema, so that no statement lists columns by hand.
        self._width = {t: _width(store, t) for t in TABLES}

    def insert(self, table: str, rows: Iterable[tuple[Any, ...]], *, ignore: bool = True) -> int:
        """Insert rows in the table's column order; returns how many were stored (with
        `ignore`, a row repeating a key is dropped, and not counted)."""
        marks = ",".join("?" * self._width[table])
        verb = "INSERT OR IGNORE" if ignore else "INSERT"
        before = self.conn.total_changes
        self.conn.executemany(f"{verb} INTO {table} VALUES ({marks})", rows)
        return self.conn.total_changes - before

    @contextlib.contextmanager
    def savepoint(self, name: str) -> Iterator[None]:
        """Part of the transaction that an exception undoes alone (then re-raised)."""
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        self.conn.execute(f"RELEASE {name}")

    @contextlib.contextmanager
    def sorted_rows(
        self, width: int, rows: Iterable[tuple[Any, ...]], key: int
    ) -> Iterator[Iterator[tuple[Any, ...]]]:
        """`rows` (each `width` values) sorted by value `key`, then by arrival, through a
        temporary table on disk: bounded memory for files of any size."""
        cols = ", ".join(f"c{i}" for i in range(width))
        rows = iter(rows)
        first = next(rows, None)
        staged = rows if first is None else itertools.chain([first], rows)
        create, drop = _stage(self.dialect, width, first)
        self.conn.execute(drop)
        self.conn.execute(create)
        marks = ",".join("?" * width)
        self.conn.executemany(f"INSERT INTO gtfs_stage ({cols}) VALUES ({marks})", staged)
        # A cursor of its own: the caller reads it while writing through the connection.
        cursor = self.conn.cursor().execute(f"SELECT {cols} FROM gtfs_stage ORDER BY c{key}, n")
        failed = False
        try:
            yield (tuple(r) for r in cursor)
        except BaseException:
            failed = True
            raise
        finally:
            cursor.close()
            # PostgreSQL: a failed statement aborted the transaction, which takes the table
            # with it (ON COMMIT DROP); nothing more can run in it.
            if not (failed and self.dialect == "postgresql"):
                self.conn.execute(drop)

    def describe(self, source: str, imported: float, summary: str) -> None:
        """The feed's row: where it came from, when, its counts (JSON text)."""
        self.insert("gtfs_feed", [(1, source, imported, summary)], ignore=False)


@contextlib.contextmanager
def replacing(store: CentralStore) -> Iterator[FeedWriter]:
    """One transaction that empties the GTFS tables and fills them again; an exception
    rolls it all back (the old feed stays)."""
    conn = store.db.conn
    if dialect(store) == "postgresql":  # the server sizes its own caches; no WAL file here
        with store.transaction():
            for name in TABLES:
                conn.execute(f"DELETE FROM {name}")
            yield FeedWriter(store)
        return
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB while the big tables fill
    try:
        with store.transaction():
            for name in TABLES:
                conn.execute(f"DELETE FROM {name}")
            yield FeedWriter(store)
    finally:
        conn.execute("PRAGMA cache_size = -2000")
    with contextlib.suppress(sqlite3.OperationalError):  # readers may hold it: not needed
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _width(store: CentralStore, table: str) -> int:
    """How many columns `table` has (a query's description: the same on both backends)."""
    return len(store.db.execute(f"SELECT * FROM {table} LIMIT 0").description)


def _stage(which: Dialect, width: int, first: tuple[Any, ...] | None) -> tuple[str, str]:
    """(CREATE, DROP) of the temporary table `sorted_rows` stages `width` values a row in,
    numbered in arrival order (`n`). SQLite takes any value in an untyped column; PostgreSQL's
    columns are typed after the first row's values, so that they read back as they went in."""
    if which == "sqlite":
        cols = ", ".join(f"c{i}" for i in range(width))
        create = f"CREATE TEMP TABLE gtfs_stage (n INTEGER PRIMARY KEY, {cols})"
        return create, "DROP TABLE IF EXISTS temp.gtfs_stage"
    values = first if first is not None else ("",) * width
    cols = ", ".join(f"c{i} {_pg_type(v)}" for i, v in enumerate(values))
    create = (
        "CREATE TEMP TABLE gtfs_stage (n bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        f" {cols}) ON COMMIT DROP"
    )
    return create, "DROP TABLE IF EXISTS pg_temp.gtfs_stage"


def _pg_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double precision"
    return "bytea" if isinstance(value, bytes) else "text"
