"""Writing an imported GTFS feed into central's store (the tables of migration 4).

A feed replaces the previous one whole, in one transaction (`replacing`): readers see the
old timetable or the new one, never a mix, and a failed import leaves the old one in place.
Rows come from the pure checkers of `protocols.gtfs` as tuples in the tables' column order
and go straight into `executemany`, so millions of stop times need neither memory nor
minutes. The rules (what is an error) are central/gtfs_import.py's.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

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
        # Each table's width from the schema, so that no statement lists columns by hand.
        self._width = {t: len(store.db.table(t).columns) for t in TABLES}

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
        self.conn.execute("DROP TABLE IF EXISTS temp.gtfs_stage")
        self.conn.execute(f"CREATE TEMP TABLE gtfs_stage (n INTEGER PRIMARY KEY, {cols})")
        marks = ",".join("?" * width)
        self.conn.executemany(f"INSERT INTO gtfs_stage ({cols}) VALUES ({marks})", rows)
        # A cursor of its own: the caller reads it while writing through the connection.
        cursor = self.conn.cursor().execute(f"SELECT {cols} FROM gtfs_stage ORDER BY c{key}, n")
        try:
            yield (tuple(r) for r in cursor)
        finally:
            cursor.close()
            self.conn.execute("DROP TABLE temp.gtfs_stage")

    def describe(self, source: str, imported: float, summary: str) -> None:
        """The feed's row: where it came from, when, its counts (JSON text)."""
        self.insert("gtfs_feed", [(1, source, imported, summary)], ignore=False)


@contextlib.contextmanager
def replacing(store: CentralStore) -> Iterator[FeedWriter]:
    """One transaction that empties the GTFS tables and fills them again; an exception
    rolls it all back (the old feed stays)."""
    conn = store.db.conn
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
