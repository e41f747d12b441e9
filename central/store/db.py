"""Central's database: one SQLite file (sqlite-utils, WAL), its schema migrated in code.

`CentralStore` is the connection and the one transaction helper; its methods for what the
buses send (`TelemetryTables`) and the per-bus documents (`DesiredTables`) come from the
sibling modules that own those tables. The other tables are read and written by the
functions of their modules (messages, diversions, alarms, ads, gtfs, gtfs_load, queries),
each taking the store.

A process opens the store once (`busfleet central serve`, or a tool filling a new database
while no central runs) and hands it to its parts. Work that runs on another thread (the
dispatch's slow reads and imports) takes `store.for_thread()`: SQLite connections are not to
be shared between threads, and the store, not its callers, knows how to open the same file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from central.store.backend import NotPorted, is_postgres_url
from central.store.commands import CommandTables
from central.store.desired import DesiredTables
from central.store.schema import MIGRATIONS
from central.store.telemetry import TelemetryTables
from central.store.tx import transaction

__all__ = ["CentralStore", "is_central_database"]


class CentralStore(CommandTables, TelemetryTables, DesiredTables):
    """The one owner of central's database: open it once per process, pass it around."""

    backend = "sqlite"  # pg_store.PgCentralStore: "postgresql"

    def __init__(self, path: str | Path, *, migrate: bool = True) -> None:
        _refuse_url(path)
        self.path = str(path)
        if self.path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: the ingest sends a bus its receipt (and the bus forgets the
        # records) as soon as the commit returns. In WAL mode a NORMAL commit is not yet on
        # disk then, and a power cut can roll it back; FULL syncs the WAL at every commit.
        # Every connection of the store gets it: `for_thread` ones commit imports and
        # requests, and any of them may be the one whose commit precedes a receipt.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        if migrate:
            self._migrate()

    @property
    def shareable(self) -> bool:
        """Another thread can open this database (`for_thread`): it is a file, not memory."""
        return self.path != ":memory:"

    @contextlib.contextmanager
    def for_thread(self) -> Iterator[CentralStore]:
        """A connection of its own to the same file, for work on another thread, closed
        after the block. Its schema is this store's (migrated when it opened). WAL lets it
        read while this one writes; a write waits for the other's (busy_timeout)."""
        if not self.shareable:
            raise ValueError("an in-memory database has no second connection")
        other = CentralStore(self.path, migrate=False)
        try:
            yield other
        finally:
            other.close()

    def _migrate(self) -> None:
        """Bring the schema up to date; safe when several workers start at once."""
        conn = self.db.conn
        with transaction(conn):  # one migrator at a time; the others wait, then see it done
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction around many reads and writes; nested use joins it.

        Group commit (a commit costs far more than a row) and read-modify-write both use it.
        """
        return transaction(self.db.conn)

    def close(self) -> None:
        self.db.conn.close()


def pending_migrations(path: str | Path) -> int:
    """How many schema migrations opening the database at `path` would run (all of them for a
    new file). Only reads."""
    _refuse_url(path)
    if str(path) == ":memory:" or not Path(path).is_file():
        return len(MIGRATIONS)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = 1")
        return max(0, len(MIGRATIONS) - int(conn.execute("PRAGMA user_version").fetchone()[0]))
    finally:
        conn.close()


def is_central_database(path: str | Path) -> bool:
    """Whether the SQLite file at `path` is central's database: its schema has run (user_version
    1 or more) and it has central's telemetry. Only reads: a tool pointed at another file must
    refuse before `CentralStore` creates central's tables in it (or turns on WAL). A file that
    is no SQLite database raises sqlite3.DatabaseError."""
    _refuse_url(path)
    if not Path(path).is_file():  # connecting would create it
        return False
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = 1")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        table = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'telemetry'"
        return version >= 1 and conn.execute(table).fetchone() is not None
    finally:
        conn.close()


def _refuse_url(db: str | Path) -> None:
    """A PostgreSQL URL is not a file name: only ported code opens one (pg_store.open_store)."""
    if is_postgres_url(str(db)):
        raise NotPorted(
            "this part of central opens a SQLite file only (central/store/backend.py says what"
            " runs on PostgreSQL, through pg_store.open_store); use a SQLite file for this,"
            f" not {str(db).split('@')[-1]!r}"
        )


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script; a trigger's body (`BEGIN ...; END`) is one."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending
