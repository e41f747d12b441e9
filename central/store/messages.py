"""Passenger messages (table `messages`); the rules are central/messages.py's.

Rows are dicts keyed by `MESSAGE_COLUMNS`; `targets` is JSON text as stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from central.store.db import CentralStore

__all__ = [
    "MESSAGE_COLUMNS",
    "add_message",
    "due_messages",
    "end_message",
    "end_messages",
    "message_rows",
    "message_status",
]

MESSAGE_COLUMNS = (
    "id",
    "created",
    "text_de",
    "text_en",
    "priority",
    "targets",
    "valid_from",
    "valid_to",
    "status",
    "ended",
)
_INSERT = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))})"
)


def message_rows(
    store: CentralStore,
    *,
    status: str | None = None,
    limit: int | None = None,
    columns: Iterable[str] = MESSAGE_COLUMNS,
) -> list[dict[str, Any]]:
    """Messages (their `columns`), newest first; only those of `status` if given."""
    args: list[object] = [] if status is None else [status]
    where = "" if status is None else " WHERE status = ?"
    sql = f"SELECT {', '.join(columns)} FROM messages{where} ORDER BY created DESC, id"
    if limit is not None:
        sql, args = f"{sql} LIMIT ?", [*args, limit]
    return list(store.db.query(sql, args))


def add_message(store: CentralStore, row: dict[str, Any]) -> None:
    """Store a new message (a row with the columns of `MESSAGE_COLUMNS`)."""
    store.db.execute(_INSERT, [row.get(c) for c in MESSAGE_COLUMNS])


def end_message(store: CentralStore, message_id: str, status: str, now: float, *, was: str) -> bool:
    """Give a message of status `was` its final `status`; False if it has not that status."""
    cur = store.db.execute(
        "UPDATE messages SET status = ?, ended = ? WHERE id = ? AND status = ?",
        (status, now, message_id, was),
    )
    return cur.rowcount > 0


def end_messages(
    store: CentralStore, ids: Iterable[str], status: str, now: float, *, was: str
) -> None:
    """`end_message` for many messages in one statement."""
    store.db.conn.executemany(
        "UPDATE messages SET status = ?, ended = ? WHERE id = ? AND status = ?",
        [(status, now, i, was) for i in ids],
    )


def message_status(store: CentralStore, message_id: str) -> str | None:
    """The message's status; None if there is no such message."""
    row = store.db.execute("SELECT status FROM messages WHERE id = ?", [message_id]).fetchone()
    return None if row is None else str(row[0])


def due_messages(store: CentralStore, status: str, now: float) -> list[str]:
    """Ids of the messages of `status` whose window ended by `now` (an indexed query)."""
    sql = "SELECT id FROM messages WHERE status = ? AND valid_to <= ?"
    return [str(r[0]) for r in store.db.execute(sql, (status, now))]
