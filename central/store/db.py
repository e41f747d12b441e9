"""Central's database: one SQLite file (sqlite-utils, WAL), its schema migrated in code.

`CentralStore` is the connection and the one transaction helper; its methods for what the
buses send (`TelemetryTables`) and the per-bus documents (`DesiredTables`) come from the
sibling modules that own those tables. The other tables are read and written by the
functions of their modules (messages, diversions, alarms, ads, gtfs, gtfs_load, queries),
each taking the store.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import sqlite_utils

from central.store.desired import DesiredTables
from central.store.schema import MIGRATIONS
from central.store.telemetry import TelemetryTables
from central.store.tx import transaction

__all__ = ["CentralStore"]


class CentralStore(TelemetryTables, DesiredTables):
    """The one owner of central's database: open it once per process, pass it around."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        """Bring the schema up to date; safe when several workers start at once."""
        conn = self.db.conn
        with transaction(conn):  # one migrator at a time; the others wait, then see it done
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction around many reads and writes; nested use joins it.

        Group commit (a commit costs far more than a row) and read-modify-write both use it.
        """
        return transaction(self.db.conn)

    def close(self) -> None:
        self.db.conn.close()
