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


def diversion_rows(
    store: CentralStore, *, status: str | None = None
) -> list[tuple[bytes, float, str, float | None]]:
    """(body, created, status, ended) of diversions, newest first; only of `status` if given."""
    where, args = ("status = ?", [status]) if status is not None else (None, [])
    rows = store.db.table("diversions").rows_where(
        where, args, order_by="created DESC, id", select="body, created, status, ended"
    )
    return [(bytes(r["body"]), r["created"], r["status"], r["ended"]) for r in rows]


def add_diversion(store: CentralStore, row: dict[str, Any]) -> None:
    """Store a new diversion: id, created, route_id, body, valid_from, valid_to, status."""
    store.db.table("diversions").insert(row)


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
