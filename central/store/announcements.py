"""The commands of one live announcement (issue 17): rows of the `commands` table whose id
begins with the announcement's id (central/announcements.py names them so). Plain SQL, the
same on both backends (`substr`, no LIKE, no text ordering: sorted in Python)."""

from __future__ import annotations

from typing import Any

from central.store.db import CentralStore

__all__ = ["PREFIX_LEN", "announcement_commands"]

PREFIX_LEN = 13  # an announcement id (12 hex digits) and "-": each command's id begins so
_SQL = (
    "SELECT id, bus, sent, expires, status, reason, answered FROM commands"
    f" WHERE name = 'announce' AND substr(id, 1, {PREFIX_LEN}) = ?"
)


def announcement_commands(store: CentralStore, prefix: str) -> list[dict[str, Any]]:
    """The commands whose id begins with `prefix` (PREFIX_LEN characters), by bus."""
    if len(prefix) != PREFIX_LEN:
        return []
    return sorted(store.db.query(_SQL, [prefix]), key=lambda row: (str(row["bus"]), row["id"]))
