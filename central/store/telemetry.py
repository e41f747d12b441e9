"""What the buses send, as rows: telemetry, events, and the commands sent to them.

The ingest's hot path (10,000 records a second): each batch is one `executemany` of a
statement built once from the column list, inside the caller's transaction (group commit).
Telemetry and events are keyed on (bus, seq): a record the bus sends twice (after an outage,
a crash, a lost PUBACK) is stored once, and `add_records` / `add_events` say how many were new.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlite_utils

from central.store.tx import transaction
from protocols.schemas import TelemetryRecord

__all__ = ["EVENT_COLUMNS", "TELEMETRY_COLUMNS", "TelemetryTables", "record_row"]

TELEMETRY_COLUMNS = (
    "bus",
    "seq",
    "t",
    "lat",
    "lon",
    "speed",
    "track",
    "mode",
    "hdop",
    "sats",
    "estimated",
    "speed_kmh",
    "rpm",
    "doors_open",
    "coolant_c",
    "fuel_pct",
    "odometer_m",
    "backfill",
    "received",
)
EVENT_COLUMNS = ("bus", "seq", "t", "kind", "severity", "data", "backfill", "received")


def _insert_or_ignore(table: str, columns: Sequence[str]) -> str:
    """One parameterised INSERT for `executemany`, its columns named once."""
    marks = ",".join("?" * len(columns))
    return f"INSERT OR IGNORE INTO {table} ({','.join(columns)}) VALUES ({marks})"


_INSERT_TELEMETRY = _insert_or_ignore("telemetry", TELEMETRY_COLUMNS)
_INSERT_EVENT = _insert_or_ignore("events", EVENT_COLUMNS)


def record_row(bus: str, rec: TelemetryRecord, backfill: bool, received: float) -> tuple[Any, ...]:
    """A telemetry record as a row in `TELEMETRY_COLUMNS` order."""
    p, v = rec.pos, rec.veh
    return (
        bus,
        rec.seq,
        rec.t,
        p.lat if p else None,
        p.lon if p else None,
        p.speed if p else None,
        p.track if p else None,
        p.mode if p else None,
        p.hdop if p else None,
        p.sats if p else None,
        int(p.estimated) if p else None,
        v.speed_kmh if v else None,
        v.rpm if v else None,
        None if v is None or v.doors_open is None else int(v.doors_open),
        v.coolant_c if v else None,
        v.fuel_pct if v else None,
        v.odometer_m if v else None,
        int(backfill),
        received,
    )


class TelemetryTables:
    """Telemetry, events and commands; a part of `CentralStore`."""

    db: sqlite_utils.Database

    def add_records(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert telemetry rows; duplicates (same bus and seq) are ignored. Returns new rows."""
        return self._add(_INSERT_TELEMETRY, rows)

    def add_events(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert event rows (`EVENT_COLUMNS` order); duplicates are ignored. Returns new rows."""
        return self._add(_INSERT_EVENT, rows)

    def _add(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
        conn = self.db.conn
        before = conn.total_changes
        if conn.in_transaction:  # the ingest's group commit: no context manager per message
            conn.executemany(sql, rows)
        else:
            with transaction(conn):
                conn.executemany(sql, rows)
        return conn.total_changes - before

    def telemetry(self, bus: str | None = None) -> list[dict[str, Any]]:
        if bus is None:
            return list(self.db.query("SELECT * FROM telemetry ORDER BY bus, seq"))
        return list(self.db.query("SELECT * FROM telemetry WHERE bus = ? ORDER BY seq", [bus]))

    def seqs(self, bus: str) -> list[int]:
        sql = "SELECT seq FROM telemetry WHERE bus = ? ORDER BY seq"
        return [r[0] for r in self.db.execute(sql, [bus])]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])

    def answer_command(
        self, bus: str, cmd_id: str, status: str, reason: str | None, t: float
    ) -> bool:
        """Record a command's result from `bus`; only the first answer of the bus the command
        was sent to counts (another bus that learnt the id answers nothing)."""
        cur = self.db.execute(
            "UPDATE commands SET status = ?, reason = ?, answered = ?"
            " WHERE id = ? AND bus = ? AND status = 'sent'",
            (status, reason, t, cmd_id, bus),
        )
        return cur.rowcount > 0

    def expire_commands(self, now: float) -> int:
        """Commands past their expiry without an answer are expired; returns how many.

        Asked every half second: only a write when there is one to make (a long import holds
        the write lock, and the service must not wait on it for nothing)."""
        due = "SELECT 1 FROM commands WHERE status = 'sent' AND expires < ? LIMIT 1"
        if self.db.execute(due, (now,)).fetchone() is None:
            return 0
        cur = self.db.execute(
            "UPDATE commands SET status = 'expired', reason = 'no answer before expiry',"
            " answered = ? WHERE status = 'sent' AND expires < ?",
            (now, now),
        )
        return cur.rowcount

    def commands(self, bus: str | None = None) -> list[dict[str, Any]]:
        if bus is None:
            return list(self.db.query("SELECT * FROM commands ORDER BY sent, id"))
        return list(self.db.query("SELECT * FROM commands WHERE bus = ? ORDER BY sent, id", [bus]))
