"""The on-disk outbox: every record is written here, with its sequence number, before it is sent.

SQLite in WAL mode with synchronous=FULL: a record that `append` returned survives kill -9
and power loss. Sequence numbers come from an AUTOINCREMENT key, so they are never reused,
even after the rows are deleted; central deduplicates on (bus, seq). Rows are deleted only
after the broker acknowledged them (QoS 1 PUBACK), so an outage or a crash can only cause a
resend, never a loss.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    kind: str
    created: float  # wall clock when written
    body: bytes


class Outbox:
    """A durable FIFO of encoded records keyed by sequence number."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " kind TEXT NOT NULL, created REAL NOT NULL, body BLOB NOT NULL)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")

    def append(self, kind: str, body: bytes, created: float | None = None) -> int:
        """Store one record durably and return its sequence number."""
        cur = self.db.execute(
            "INSERT INTO outbox (kind, created, body) VALUES (?, ?, ?)",
            (kind, time.time() if created is None else created, body),
        )
        seq = cur.lastrowid
        assert seq is not None
        return seq

    def pending(self, limit: int, kind: str | None = None) -> list[Pending]:
        """The oldest unsent records, in sequence order."""
        if kind is None:
            rows = self.db.execute(
                "SELECT seq, kind, created, body FROM outbox ORDER BY seq LIMIT ?", (limit,)
            )
        else:
            rows = self.db.execute(
                "SELECT seq, kind, created, body FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?",
                (kind, limit),
            )
        return [Pending(*row) for row in rows.fetchall()]

    def remove(self, seqs: list[int]) -> None:
        """Forget records the broker has acknowledged."""
        if seqs:
            marks = ",".join("?" * len(seqs))
            self.db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", seqs)

    def count(self) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(row[0])

    def next_counter(self, key: str) -> int:
        """Increment and return a durable counter (the MQTT session number, for one)."""
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, 1)"
            " ON CONFLICT(key) DO UPDATE SET value = value + 1",
            (key,),
        )
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.db.conn.close()
