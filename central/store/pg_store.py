"""Central's store on PostgreSQL, and `open_store`, which picks the backend from the setting.

`PgCentralStore` is a `CentralStore` whose connection interface is PgDatabase (pg_db.py): the
store's methods and the functions of central/store/*.py run on it unchanged where their SQL is
portable, and raise NotPorted where it is not yet (backend.py has the design and what is
ported). Only code that has been ported opens it, through `open_store`; `CentralStore` refuses
a URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import sqlite_utils

from central.store import db as sqlite_db
from central.store.backend import is_postgres_url
from central.store.db import CentralStore
from central.store.pg_db import WRITE_LOCK, PgDatabase, connect
from central.store.pg_schema import MIGRATIONS, VERSION_TABLE

__all__ = ["PgCentralStore", "is_central_database", "open_store", "pending_migrations"]


def open_store(db: str | Path, *, migrate: bool = True) -> CentralStore:
    """The store of the database setting: a SQLite file, or a `postgresql://` URL."""
    if is_postgres_url(str(db)):
        return PgCentralStore(str(db), migrate=migrate)
    return CentralStore(db, migrate=migrate)


def pending_migrations(db: str | Path) -> int:
    """How many schema migrations opening the database setting `db` would run; only reads."""
    if not is_postgres_url(str(db)):
        return sqlite_db.pending_migrations(db)
    version = _schema_version(str(db))
    return len(MIGRATIONS) - (version or 0)


def is_central_database(db: str | Path) -> bool:
    """Whether the database setting `db` names central's database (db.py's, for a URL too:
    its schema has run, and it has central's telemetry). Only reads; a server that cannot be
    reached raises psycopg's OperationalError."""
    if not is_postgres_url(str(db)):
        return sqlite_db.is_central_database(db)
    version = _schema_version(str(db))
    if not version:
        return False
    with connect(str(db)) as conn:
        found = conn.execute("SELECT to_regclass('telemetry') IS NOT NULL").fetchone()
    return bool(found and found[0])


def _schema_version(url: str) -> int | None:
    """The schema version of the database at `url`; None if central's schema never ran."""
    with connect(url) as conn:
        table = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
        if not (table and table[0]):
            return None
        row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
    return None if row is None else int(row[0])


class PgCentralStore(CentralStore):
    """The one owner of central's database on a PostgreSQL server (one connection)."""

    backend = "postgresql"

    def __init__(
        self, url: str, *, migrate: bool = True
    ) -> None:  # no SQLite file: not super().__init__
        self.path = url
        self.pg = PgDatabase(connect(url))
        # The store modules annotate `db` as sqlite-utils' Database; PgDatabase is the part of
        # it they use (and NotPorted for the rest). The cast goes when they annotate the
        # interface instead (backend.py).
        self.db = cast(sqlite_utils.Database, self.pg)
        if migrate:
            self._migrate()

    @property
    def shareable(self) -> bool:
        return True

    @contextlib.contextmanager
    def for_thread(self) -> Iterator[CentralStore]:
        other = PgCentralStore(self.path, migrate=False)
        try:
            yield other
        finally:
            other.close()

    def schema_version(self) -> int:
        row = self.pg.conn.raw.execute("SELECT version FROM central_schema").fetchone()
        return 0 if row is None else int(row[0])

    def _migrate(self) -> None:
        """Bring the schema up to date; safe when several instances start at once (they wait
        for the write lock, then find it done)."""
        raw = self.pg.conn.raw
        with raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            raw.execute("CREATE TABLE IF NOT EXISTS central_schema (version bigint NOT NULL)")
            row = raw.execute("SELECT version FROM central_schema").fetchone()
            if row is None:
                raw.execute("INSERT INTO central_schema (version) VALUES (0)")
            version = 0 if row is None else int(row[0])
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                raw.execute(script.encode())  # several statements: no parameters
                raw.execute("UPDATE central_schema SET version = %s", (number,))

    def close(self) -> None:
        self.pg.conn.close()
