"""The on-disk outbox: every record is written here, with its sequence number, before it is sent.

SQLite in WAL mode with synchronous=FULL: a record that `append` returned survives kill -9
and power loss. Sequence numbers come from an AUTOINCREMENT key, so they are never reused;
central deduplicates on (bus, seq). A record stays pending until central's receipt (the
`stored` topic) says it is stored — not merely until the broker's PUBACK, so a broker or
central crash can only cause a resend, never a loss. Stored records are kept a while longer
(history to resend on request) and then deleted.

Disk budget policy (when the records' bytes exceed the budget), in this order:
1. delete stored history, oldest first;
2. thin pending telemetry older than one hour to one record per minute, oldest first;
3. delete the oldest pending telemetry.
Events, command results and alarms are never dropped. Every dropped pending record is
reported to central as a `dropped` event (its sequence ranges), so that a gap is explained.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from protocols.ranges import ranges

# Lower is sent first: alarms never wait behind a backlog of telemetry.
PRIORITY = {"emergency": -1, "alarm": 0, "event": 1, "cmd_ack": 1, "telemetry": 2}
DROPPABLE = "telemetry"
ROW_OVERHEAD = 40  # bytes of SQLite bookkeeping per row, roughly, for the budget


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    kind: str
    created: float  # wall clock when written
    body: bytes


class Outbox:
    """A durable, prioritised FIFO of encoded records keyed by sequence number."""

    def __init__(self, path: str | Path, *, budget_bytes: int = 200_000_000) -> None:
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
            " priority INTEGER NOT NULL, created REAL NOT NULL, body BLOB NOT NULL,"
            " stored INTEGER NOT NULL DEFAULT 0)"
        )
        self.db.execute(
            "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (stored, priority, seq)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")
        row = self.db.execute(
            f"SELECT COALESCE(SUM(length(body) + {ROW_OVERHEAD}), 0) FROM outbox"
        ).fetchone()
        self.size_bytes = int(row[0])
        self.dropped = 0  # pending records dropped by the budget policy since start

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Several writes that land together or not at all."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def append(self, kind: str, body: bytes, created: float | None = None) -> int:
        """Store one record durably and return its sequence number."""
        cur = self.db.execute(
            "INSERT INTO outbox (kind, priority, created, body) VALUES (?, ?, ?, ?)",
            (kind, PRIORITY.get(kind, 1), time.time() if created is None else created, body),
        )
        seq = cur.lastrowid
        assert seq is not None
        self.size_bytes += len(body) + ROW_OVERHEAD
        return seq

    def pending(self, limit: int, *, after: int = 0, kind: str | None = None) -> list[Pending]:
        """Unconfirmed records, most urgent kind first, then in sequence order."""
        where = "stored = 0 AND seq > ?"
        params: list[object] = [after]
        if kind is not None:
            where += " AND kind = ?"
            params.append(kind)
        rows = self.db.execute(
            f"SELECT seq, kind, created, body FROM outbox WHERE {where}"
            " ORDER BY priority, seq LIMIT ?",
            [*params, limit],
        )
        return [Pending(*row) for row in rows.fetchall()]

    def confirm(self, seq_ranges: list[tuple[int, int]]) -> int:
        """Mark records central has stored; returns how many were pending."""
        changed = 0
        for first, last in seq_ranges:
            cur = self.db.execute(
                "UPDATE outbox SET stored = 1 WHERE seq BETWEEN ? AND ? AND stored = 0",
                (first, last),
            )
            changed += cur.rowcount
        return changed

    def requeue_since(self, t: float) -> int:
        """Send stored history again from time `t` on (central asked for it)."""
        cur = self.db.execute(
            "UPDATE outbox SET stored = 0 WHERE stored = 1 AND created >= ?", (t,)
        )
        return cur.rowcount

    def count(self, *, pending_only: bool = True) -> int:
        sql = "SELECT COUNT(*) FROM outbox" + (" WHERE stored = 0" if pending_only else "")
        return int(self.db.execute(sql).fetchone()[0])

    def enforce_budget(self, now: float | None = None) -> list[tuple[int, int]]:
        """Apply the disk budget policy; returns the ranges of pending records dropped."""
        if self.size_bytes <= self.budget_bytes:
            return []
        now = time.time() if now is None else now
        self._delete("stored = 1", "seq")  # 1. history
        dropped: list[int] = []
        if self.size_bytes > self.budget_bytes:  # 2. thin old telemetry to one a minute
            dropped += self._delete(
                f"stored = 0 AND kind = '{DROPPABLE}' AND created < {now - 3600}"
                " AND seq NOT IN (SELECT MIN(seq) FROM outbox WHERE stored = 0 AND"
                f" kind = '{DROPPABLE}' GROUP BY CAST(created / 60 AS INTEGER))",
                "seq",
            )
        if self.size_bytes > self.budget_bytes:  # 3. oldest telemetry
            dropped += self._delete(f"stored = 0 AND kind = '{DROPPABLE}'", "seq")
        self.dropped += len(dropped)
        return ranges(dropped)

    def _delete(self, where: str, order: str) -> list[int]:
        """Delete matching rows, oldest first, until the budget holds; returns their seqs."""
        excess = self.size_bytes - int(self.budget_bytes * 0.9)  # some headroom
        rows = self.db.execute(
            f"SELECT seq, length(body) FROM outbox WHERE {where} ORDER BY {order}"
        ).fetchall()
        victims: list[int] = []
        freed = 0
        for seq, size in rows:
            if freed >= excess:
                break
            victims.append(seq)
            freed += size + ROW_OVERHEAD
        for first, last in ranges(victims):
            self.db.execute(
                f"DELETE FROM outbox WHERE seq BETWEEN ? AND ? AND ({where})", (first, last)
            )
        self.size_bytes -= freed
        return victims

    def forget_history(self, older_than: float) -> int:
        """Housekeeping: delete stored records created before `older_than`."""
        rows = self.db.execute(
            "SELECT COALESCE(SUM(length(body) + ?), 0), COUNT(*) FROM outbox"
            " WHERE stored = 1 AND created < ?",
            (ROW_OVERHEAD, older_than),
        ).fetchone()
        self.db.execute("DELETE FROM outbox WHERE stored = 1 AND created < ?", (older_than,))
        self.size_bytes -= int(rows[0])
        return int(rows[1])

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
