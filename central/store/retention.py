"""Retention's SQL: what is past its time, per kind, and removing it in small transactions.

The rules (which kind, how long, why) are central/retention.py's. Here, per kind:

    positions     telemetry rows keep their vehicle data, their position columns are cleared
                  (the partial index `telemetry_positions` finds the rows still holding one)
    vehicle       telemetry rows are deleted (a row holds nothing else by then)
    events        events of every kind but the three below are deleted
    plays         `play` events and their copies in `plays` (proof of play) are deleted
    feedback      `passenger_feedback` events are deleted
    portal_stats  `portal_stats` events are deleted

A row is past its time when the time it describes (`t`, the bus's clock) is before the
cutoff; a deleted row also when it arrived (`received`, central's clock) before it, so that a
bus with a wrong clock cannot have fresh rows purged, nor move the marks below.

Exactly once survives a purge: per bus and table, `retention_marks` keeps the highest sequence
number deleted, and a trigger (schema version 8) ignores an insert at or below it, like any
duplicate. A record the bus sends again after its row went (its receipt was lost, or a
dispatcher's `resend`) is counted as a duplicate and receipted, not stored a second time. The
price: a record created before a purged one of its bus, but arriving more than its kind's
retention after it, is taken for one already purged.

Each `purge_batch` is one transaction of at most `limit` rows, so the ingest waits at most for
one of them; the caller pauses between them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from central.store.db import CentralStore

__all__ = ["KINDS", "Expired", "expired", "purge_batch"]

# Event kinds with a retention of their own; every other kind is "events".
_EVENT_KINDS = {"plays": "play", "feedback": "passenger_feedback", "portal_stats": "portal_stats"}
KINDS = ("positions", "vehicle", "events", "plays", "feedback", "portal_stats")

_POSITION_COLUMNS = ("lat", "lon", "speed", "track", "mode", "hdop", "sats", "estimated")
_CLEAR_POSITION = (
    f"UPDATE telemetry SET {', '.join(f'{c} = NULL' for c in _POSITION_COLUMNS)}"
    " WHERE bus = ? AND seq = ?"
)
# Portable upsert (SQLite 3.24+, PostgreSQL): a mark only ever rises.
_RAISE_MARK = (
    "INSERT INTO retention_marks (tbl, bus, seq) VALUES (?, ?, ?)"
    " ON CONFLICT (tbl, bus) DO UPDATE SET seq = CASE WHEN excluded.seq > retention_marks.seq"
    " THEN excluded.seq ELSE retention_marks.seq END"
)
_OTHER_KINDS = ", ".join(f"'{k}'" for k in _EVENT_KINDS.values())


@dataclass(frozen=True, slots=True)
class Expired:
    """What a purge would remove of one kind: rows, and the oldest and newest of their times."""

    kind: str
    rows: int
    oldest: float | None
    newest: float | None


def _where(kind: str) -> tuple[str, str]:
    """(table, condition on `t < ?` and `received < ?`, both the cutoff) of a kind's rows."""
    if kind == "positions":
        return "telemetry", "lat IS NOT NULL AND t < ?"
    if kind == "vehicle":
        return "telemetry", "t < ? AND received < ?"
    if kind == "events":
        return "events", f"kind NOT IN ({_OTHER_KINDS}) AND t < ? AND received < ?"
    if kind in _EVENT_KINDS:
        return "events", f"kind = '{_EVENT_KINDS[kind]}' AND t < ? AND received < ?"
    raise ValueError(f"no retention kind {kind!r}")


def _args(condition: str, cutoff: float) -> tuple[float, ...]:
    return (cutoff,) * condition.count("?")


def expired(store: CentralStore, kind: str, cutoff: float) -> Expired:
    """What `purge_batch` would remove of `kind` before `cutoff`, counted, nothing changed."""
    table, condition = _where(kind)
    row = store.db.execute(
        f"SELECT COUNT(*), MIN(t), MAX(t) FROM {table} WHERE {condition}",
        _args(condition, cutoff),
    ).fetchone()
    return Expired(kind, int(row[0]), row[1], row[2])


def purge_batch(store: CentralStore, kind: str, cutoff: float, limit: int) -> int:
    """Remove at most `limit` rows of `kind` from before `cutoff` in one transaction;
    returns how many (0: none left)."""
    with store.transaction():
        if kind == "positions":
            keys = _select(store, "telemetry", "lat IS NOT NULL AND t < ?", cutoff, limit)
            store.db.conn.executemany(_CLEAR_POSITION, keys)
        elif kind == "vehicle":
            keys = _select(store, *_where(kind), cutoff, limit)
            _delete(store, "telemetry", keys)
        elif kind == "events":
            keys = []
            for event_kind in _event_kinds(store):
                if event_kind not in _EVENT_KINDS.values() and len(keys) < limit:
                    condition = "kind = ? AND t < ? AND received < ?"
                    keys += _select(
                        store, "events", condition, cutoff, limit - len(keys), event_kind
                    )
            _delete(store, "events", keys)
        else:
            keys = _select(store, *_where(kind), cutoff, limit)
            _delete(store, "events", keys)
            if kind == "plays":  # their copies for the report go with them
                store.db.conn.executemany("DELETE FROM plays WHERE bus = ? AND seq = ?", keys)
    return len(keys)


def _select(
    store: CentralStore, table: str, condition: str, cutoff: float, limit: int, *first: str
) -> list[tuple[str, int]]:
    """The keys of the oldest `limit` rows matching (`first` binds leading placeholders)."""
    sql = f"SELECT bus, seq FROM {table} WHERE {condition} ORDER BY t LIMIT ?"
    args = (*first, *_args(condition, cutoff)[: condition.count("?") - len(first)], limit)
    return [(str(r[0]), int(r[1])) for r in store.db.execute(sql, args)]


def _delete(store: CentralStore, table: str, keys: Sequence[tuple[str, int]]) -> None:
    """Delete rows by key, raising their buses' marks first (same transaction)."""
    highest: dict[str, int] = {}
    for bus, seq in keys:
        highest[bus] = max(seq, highest.get(bus, seq))
    conn = store.db.conn
    conn.executemany(_RAISE_MARK, [(table, bus, seq) for bus, seq in highest.items()])
    conn.executemany(f"DELETE FROM {table} WHERE bus = ? AND seq = ?", keys)


def _event_kinds(store: CentralStore) -> Iterator[str]:
    """Every event kind stored, each found by one step down the (kind, t) index."""
    sql = "SELECT MIN(kind) FROM events WHERE kind > ?"
    kind = store.db.execute("SELECT MIN(kind) FROM events").fetchone()[0]
    while kind is not None:
        yield str(kind)
        kind = store.db.execute(sql, (kind,)).fetchone()[0]
