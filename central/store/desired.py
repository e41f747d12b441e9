"""Per-bus state documents: the fleet view (`buses`), desired and reported state.

The desired document of a bus is versioned here: `put_desired` takes the next version and
lets the caller build the body for it (central/desired.py does the read-modify-write under
one transaction). Reported documents are what the buses last said they applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import sqlite_utils

from central.store.tx import transaction

__all__ = ["DesiredTables"]

_SAVE_BUS = (
    "INSERT INTO buses (bus, online, session, last_seen, body) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(bus) DO UPDATE SET online = excluded.online, session = excluded.session,"
    " last_seen = excluded.last_seen, body = excluded.body"
)


class DesiredTables:
    """Fleet entries, desired and reported documents; a part of `CentralStore`."""

    db: sqlite_utils.Database

    def save_bus(
        self, bus: str, online: bool, session: int, last_seen: float | None, body: str
    ) -> None:
        self.save_buses([(bus, online, session, last_seen, body)])

    def save_buses(self, rows: Iterable[tuple[str, bool, int, float | None, str]]) -> None:
        """`save_bus` for many buses in one transaction: (bus, online, session, last_seen, body)."""
        with transaction(self.db.conn):
            self.db.conn.executemany(
                _SAVE_BUS, ((b, int(on), s, seen, body) for b, on, s, seen, body in rows)
            )

    def buses(self) -> Iterable[dict[str, Any]]:
        return self.db.query("SELECT * FROM buses ORDER BY bus")

    def put_desired(self, bus: str, body_for_version: Callable[[int], bytes]) -> int:
        """Store the next desired document of `bus`; `body_for_version(v)` builds it. Returns v."""
        with transaction(self.db.conn):
            row = self.db.execute("SELECT version FROM desired WHERE bus = ?", [bus]).fetchone()
            version = (row[0] if row else 0) + 1
            body = body_for_version(version)
            # Plain SQL, not sqlite-utils' upsert: that reads the table's columns on every call,
            # and this is on the path of every dispatcher action (bench/push_latency.py:
            # store write p99 0.8 ms with it, 0.3 ms without).
            self.db.execute(
                "INSERT INTO desired (bus, version, body) VALUES (?, ?, ?)"
                " ON CONFLICT(bus) DO UPDATE SET version = excluded.version, body = excluded.body",
                (bus, version, body),
            )
        return version

    def desired(self, bus: str) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT version, body FROM desired WHERE bus = ?", [bus]).fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def all_desired(self) -> list[tuple[str, bytes]]:
        return [(r[0], bytes(r[1])) for r in self.db.execute("SELECT bus, body FROM desired")]

    def desired_versions(self) -> dict[str, int]:
        """Every bus's desired version: a cheap way to see which documents changed."""
        return {str(r[0]): int(r[1]) for r in self.db.execute("SELECT bus, version FROM desired")}

    def save_reported(self, bus: str, version: int, body: bytes) -> None:
        self.db.execute(
            "INSERT INTO reported (bus, version, body) VALUES (?, ?, ?)"
            " ON CONFLICT(bus) DO UPDATE SET version = excluded.version, body = excluded.body",
            (bus, version, body),
        )

    def reported(self, bus: str) -> bytes | None:
        """The reported document a bus last sent, as it sent it."""
        row = self.db.execute("SELECT body FROM reported WHERE bus = ?", [bus]).fetchone()
        return None if row is None else bytes(row[0])

    def all_reported(self) -> list[tuple[str, bytes]]:
        return [(r[0], bytes(r[1])) for r in self.db.execute("SELECT bus, body FROM reported")]
