"""The agent's one SQLite file, agent.sqlite: opened once, migrated once, handed to the parts.

Every durable table of the bus lives here: the outbox and its counters (onboard/link/outbox.py),
the applied desired state (onboard/link/desired.py), the commands already run
(onboard/link/commands.py), the driver terminal's messages and sent items
(onboard/driver/store.py), the portal's authorised sessions (onboard/portal/store.py) and the
timetable versions running and staged (onboard/timetable/store.py) and the configuration
central set (onboard/remote_config.py).
The agent opens it once with `open_store` and gives the same `AgentStore` to each part; a part
that runs in a process of its own (`python -m onboard.portal`) opens the same file through this
module, so the pragmas and the schema are the same wherever it is opened.

Why one file: one fsync policy (WAL, synchronous=FULL: a record `put` returned survives kill -9
and power loss), one transaction that can span two parts (a driver's acknowledgement and its
outbox record land together) and one schema version. `PRAGMA user_version` counts the
migrations applied; `MIGRATIONS` is append-only: never edit a released step, add one.

The ads cache keeps no table: its directory is its index (onboard/ads/cache.py) and proof of
play leaves as outbox events.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

__all__ = ["MIGRATIONS", "AgentStore", "open_store", "schema_version"]

# Another process (the portal run alone, a test helper) may hold the write lock a moment.
BUSY_TIMEOUT_MS = 10_000

Migration = Callable[[sqlite3.Connection], None]


def _outbox(db: sqlite3.Connection) -> None:
    # IF NOT EXISTS: files written before migrations existed already hold these tables.
    db.execute(
        "CREATE TABLE IF NOT EXISTS outbox ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
        " priority INTEGER NOT NULL, created REAL NOT NULL, body BLOB NOT NULL,"
        " stored INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (stored, priority, seq)")
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")


def _applied(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS applied (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " version INTEGER NOT NULL, body BLOB NOT NULL)"
    )


def _driver(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS driver_messages (id TEXT PRIMARY KEY, text TEXT NOT NULL,"
        " sent REAL NOT NULL, received REAL NOT NULL, expires REAL NOT NULL, acked REAL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS driver_outgoing (seq INTEGER PRIMARY KEY,"
        " kind TEXT NOT NULL, code TEXT NOT NULL, t REAL NOT NULL)"
    )


def _portal(db: sqlite3.Connection) -> None:
    # Was portal.sqlite's `sessions` and `meta`; renamed so as not to meet the outbox's `meta`.
    # Nothing is copied from an old portal.sqlite (hashed keys under a salt of its own): on the
    # first start after the update, passengers online at that moment accept the terms again.
    db.execute(
        "CREATE TABLE IF NOT EXISTS portal_sessions (key TEXT PRIMARY KEY,"
        " accepted REAL NOT NULL, last_seen REAL NOT NULL, bytes_up INTEGER NOT NULL,"
        " bytes_down INTEGER NOT NULL)"
    )
    db.execute("CREATE TABLE IF NOT EXISTS portal_meta (key TEXT PRIMARY KEY, value TEXT)")


def _commands(db: sqlite3.Connection) -> None:
    # onboard/link/commands.py: ids of the commands already run (redeliveries are ignored).
    db.execute("CREATE TABLE IF NOT EXISTS commands_done (id TEXT PRIMARY KEY, t REAL)")


def _bodies_carry_their_seq(db: sqlite3.Connection) -> None:
    """Records written before the outbox handed out sequence numbers say `"seq":0` inside;
    the link now sends bodies as stored, so write each one's number into it: pending ones, and
    stored history too, which central's `resend` command puts back in the queue."""
    rows = db.execute("SELECT seq, body FROM outbox").fetchall()
    for seq, body in rows:
        try:
            doc = msgspec.json.decode(body)
        except msgspec.DecodeError:
            continue  # not a JSON record (only tests write such bodies)
        if isinstance(doc, dict) and doc.get("seq") == 0:
            doc["seq"] = seq
            db.execute("UPDATE outbox SET body = ? WHERE seq = ?", (msgspec.json.encode(doc), seq))


def _timetable(db: sqlite3.Connection) -> None:
    # onboard/timetable/store.py: the timetable version running and the one staged (issue 14).
    db.execute(
        "CREATE TABLE IF NOT EXISTS timetable (slot TEXT PRIMARY KEY"
        " CHECK (slot IN ('running', 'staged')), body BLOB NOT NULL)"
    )


def _remote_config(db: sqlite3.Connection) -> None:
    # onboard/remote_config.py: the configuration central set, as last accepted (JSON object).
    db.execute(
        "CREATE TABLE IF NOT EXISTS remote_config (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " body BLOB NOT NULL)"
    )


# Append-only: user_version N means the first N steps have been applied.
MIGRATIONS: tuple[Migration, ...] = (
    _outbox,
    _applied,
    _driver,
    _portal,
    _commands,
    _bodies_carry_their_seq,
    _timetable,
    _remote_config,
)


def schema_version(db: sqlite3.Connection) -> int:
    """How many migrations this database has had."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


class AgentStore:
    """The open agent.sqlite: one connection, its pragmas, nestable transactions."""

    def __init__(self, db: sqlite3.Connection, path: Path | None) -> None:
        self.db = db
        self.path = path

    @property
    def conn(self) -> sqlite3.Connection:
        """The sqlite3 connection, for `executemany` and the like."""
        return self.db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes that land together or not at all; nested inside another, a savepoint."""
        if self.conn.in_transaction:
            self.db.execute("SAVEPOINT nested")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK TO nested")
                self.db.execute("RELEASE nested")
                raise
            self.db.execute("RELEASE nested")
            return
        # IMMEDIATE: take the write lock now, so a second process cannot slip in between.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def migrate(self) -> int:
        """Apply the migrations this file has not had yet; returns the schema version."""
        while True:
            with self.transaction():
                # Read inside the write lock: another process may have migrated meanwhile.
                version = schema_version(self.db)
                if version >= len(MIGRATIONS):
                    return version
                MIGRATIONS[version](self.db)
                self.db.execute(f"PRAGMA user_version = {version + 1}")

    def close(self) -> None:
        self.db.close()


def open_store(path: str | Path | None = None, *, migrate: bool = True) -> AgentStore:
    """Open (creating it if need be) agent.sqlite at `path`, or in memory for None."""
    if path is None:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        where = None
    else:
        where = Path(path)
        where.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are ours (AgentStore.transaction), never implicit.
        # check_same_thread=False: one thread at a time uses it, not always the opening one.
        conn = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
    # The bare connection: the agent only ever calls execute() (sqlite_utils' Database added
    # nothing here but ~6 MB of imports: click, dateutil, pluggy and a plugin scan).
    db = conn
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    # The portal's session rows are personal data: overwrite deleted rows, leave no trace
    # in free pages (onboard/portal/store.py).
    db.execute("PRAGMA secure_delete=ON")
    store = AgentStore(db, where)
    if migrate:
        store.migrate()
    return store
