"""The on-disk outbox: every record is written here, with its sequence number, before it is sent.

Its table lives in agent.sqlite (onboard/store.py: WAL, synchronous=FULL): a record that `put`
returned survives kill -9 and power loss. Sequence numbers come from an AUTOINCREMENT key, so
they are never reused; central deduplicates on (bus, seq). `put` hands the number to a body
builder, so each record is encoded once, with its number inside, and sent as stored. A record
stays pending until central's receipt (the `stored` topic) says it is stored — not merely until
the broker's PUBACK, so a broker or central crash can only cause a resend, never a loss.
Stored records are kept a while longer (history to resend on request) and then deleted.

Disk budget policy (when the records' bytes exceed the budget), in this order:
1. delete stored history, oldest first;
2. thin pending telemetry older than one hour to one record per minute, oldest first;
3. delete the oldest pending telemetry.
Events, command results and alarms are never dropped. Every dropped pending record is
reported to central as a `dropped` event (its sequence ranges), so that a gap is explained.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from onboard.store import AgentStore, open_store
from protocols.ranges import ranges

# Lower is sent first: alarms never wait behind a backlog of telemetry.
PRIORITY = {"emergency": -1, "alarm": 0, "event": 1, "cmd_ack": 1, "telemetry": 2}
DROPPABLE = "telemetry"
ROW_OVERHEAD = 40  # bytes of SQLite bookkeeping per row, roughly, for the budget

BodyBuilder = Callable[[int], bytes]  # the record's encoded body, given its sequence number


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    kind: str
    created: float  # wall clock when written
    body: bytes  # as it goes on the wire: it carries its own sequence number


class Outbox:
    """A durable, prioritised FIFO of encoded records keyed by sequence number.

    Give it the agent's store; given a path it opens one of its own through onboard.store
    (tools and tests) and closes it with itself.
    """

    def __init__(self, store: AgentStore | str | Path, *, budget_bytes: int = 200_000_000) -> None:
        self._owns_store = not isinstance(store, AgentStore)
        self.store = store if isinstance(store, AgentStore) else open_store(store)
        self.db = self.store.db
        self.budget_bytes = budget_bytes
        row = self.db.execute(
            f"SELECT COALESCE(SUM(length(body) + {ROW_OVERHEAD}), 0) FROM outbox"
        ).fetchone()
        self.size_bytes = int(row[0])
        self.dropped = 0  # pending records dropped by the budget policy since start

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Several writes that land together or not at all (the store's transaction)."""
        return self.store.transaction()

    def put(self, kind: str, build: BodyBuilder, created: float | None = None) -> int:
        """Store one record durably and return its sequence number.

        The number is handed to `build` before the body is encoded, so the body is encoded
        once, with its real number, and the link sends it as it is.
        """
        when = time.time() if created is None else created
        with self.store.transaction():  # the number and the body land together
            cur = self.db.execute(
                "INSERT INTO outbox (kind, priority, created, body) VALUES (?, ?, ?, x'')",
                (kind, PRIORITY.get(kind, 1), when),
            )
            seq = cur.lastrowid
            assert seq is not None
            body = build(seq)
            self.db.execute("UPDATE outbox SET body = ? WHERE seq = ?", (body, seq))
        self.size_bytes += len(body) + ROW_OVERHEAD
        return seq

    def append(self, kind: str, body: bytes, created: float | None = None) -> int:
        """Store an opaque body that does not carry its sequence number (the outbox's own tests).

        A record the link sends must name its number: build it with `put`."""
        return self.put(kind, lambda _seq: body, created)

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

    def rewrite(self, seq: int, body: bytes) -> None:
        """Replace a pending record's body (one stored by an older agent, fitted to today's
        bounds before it goes out: onboard/link/mqtt.py)."""
        self.db.execute("UPDATE outbox SET body = ? WHERE seq = ? AND stored = 0", (body, seq))

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
        """Close the store if the outbox opened it; the agent closes a shared one."""
        if self._owns_store:
            self.store.close()
