"""Diversions (table `diversions`); the rules are central/diversions.py's.

`body` is the `Diversion` as sent to the buses (msgpack/JSON bytes from protocols.codec); the
other columns are what the queries select and order by.
"""

from __future__ import annotations

from typing import Any

from central.store.db import CentralStore

__all__ = [
    "add_diversion",
    "diversion_rows",
    "diversion_status",
    "due_diversions",
    "end_diversion",
    "expire_diversions",
]

DIVERSION_COLUMNS = ("id", "created", "route_id", "body", "valid_from", "valid_to", "status")
_INSERT = (
    f"INSERT INTO diversions ({', '.join(DIVERSION_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(DIVERSION_COLUMNS))})"
)


def diversion_rows(
    store: CentralStore, *, status: str | None = None
) -> list[tuple[bytes, float, str, float | None]]:
    """(body, created, status, ended) of diversions, newest first; only of `status` if given."""
    where, args = (" WHERE status = ?", [status]) if status is not None else ("", [])
    sql = f"SELECT body, created, status, ended FROM diversions{where} ORDER BY created DESC, id"
    return [(bytes(r[0]), r[1], r[2], r[3]) for r in store.db.execute(sql, args)]


def add_diversion(store: CentralStore, row: dict[str, Any]) -> None:
    """Store a new diversion: id, created, route_id, body, valid_from, valid_to, status."""
    store.db.execute(_INSERT, [row[c] for c in DIVERSION_COLUMNS])


def end_diversion(
    store: CentralStore, diversion_id: str, status: str, now: float, *, was: str
) -> bool:
    """Give a diversion of status `was` its final `status`; False if it has not that status."""
    cur = store.db.execute(
        "UPDATE diversions SET status = ?, ended = ? WHERE id = ? AND status = ?",
        (status, now, diversion_id, was),
    )
    return cur.rowcount > 0


def diversion_status(store: CentralStore, diversion_id: str) -> str | None:
    """The diversion's status; None if there is no such diversion."""
    sql = "SELECT status FROM diversions WHERE id = ?"
    row = store.db.execute(sql, [diversion_id]).fetchone()
    return None if row is None else str(row[0])


def due_diversions(store: CentralStore, status: str, now: float) -> bool:
    """Whether any diversion of `status` has its window ended by `now` (an indexed query)."""
    sql = "SELECT 1 FROM diversions WHERE status = ? AND valid_to <= ? LIMIT 1"
    return store.db.execute(sql, (status, now)).fetchone() is not None


def expire_diversions(store: CentralStore, now: float, *, was: str, status: str) -> None:
    """Diversions of status `was` whose window ended by `now` get `status`."""
    store.db.execute(
        "UPDATE diversions SET status = ?, ended = ? WHERE status = ? AND valid_to <= ?",
        (status, now, was, now),
    )
