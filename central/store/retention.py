"""Retention's SQL: what is past its time, per kind, and removing it in small transactions.

The rules (which kind, how long, why) are central/retention.py's. Here, per kind:

    positions     where a bus was is cleared, wherever it is kept: the position columns of
                  telemetry rows (the rows keep their vehicle data), `lat` and `lon` in the
                  data of events (a `play`, a `gps_lost`, a driver's message: the agent adds
                  them) and in the documents of closed alarms; partial indexes (schema
                  version 8) find the rows still holding one, so a run reads only those
    vehicle       telemetry rows are deleted (a row holds nothing else by then)
    events        events of every kind but the three below are deleted
    plays         `play` events and their copies in `plays` (proof of play) are deleted
    feedback      `passenger_feedback` events are deleted
    portal_stats  `portal_stats` events are deleted

A row is past its time when the time it describes (`t`, the bus's clock) is before the
cutoff, and it arrived (`received`, central's clock) before it too, so that a bus with a wrong
clock cannot have fresh rows purged or cleared, nor move the marks below. An alarm's `t` is
central's clock already (its last change: closed that long ago).

Exactly once survives a purge: per bus and retention kind (telemetry; events, plays,
feedback, portal_stats), `retention_marks` keeps the highest sequence number deleted, and a
trigger (schema version 8) ignores an insert of that kind at or below it. A record the bus
sends again after its row went (its receipt was lost, or a dispatcher's `resend`) is
receipted, not stored a second time, and counted as such (`purged_resends`, not
`duplicates`). The price: a record created before a purged one of its bus and kind, but
arriving more than that kind's retention after it, is taken for one already purged; a late
record of another kind (a `play` below a purged journey event) is stored.

Each `purge_batch` is one transaction of at most `limit` rows, so the ingest waits at most for
one of them; the caller pauses between them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from central.store.backend import Dialect, dialect
from central.store.db import CentralStore
from central.store.telemetry import EVENT_COLUMNS

__all__ = ["KINDS", "Expired", "expired", "purge_batch", "purged_resends"]

# Event kinds with a retention of their own; every other kind is "events". The trigger
# `events_purged` (schema version 8) spells the same mapping in SQL.
_EVENT_KINDS = {"plays": "play", "feedback": "passenger_feedback", "portal_stats": "portal_stats"}
_MARK_OF_EVENT = {event_kind: kind for kind, event_kind in _EVENT_KINDS.items()}
KINDS = ("positions", "vehicle", "events", "plays", "feedback", "portal_stats")

_POSITION_COLUMNS = ("lat", "lon", "speed", "track", "mode", "hdop", "sats", "estimated")
# The keys of a position in a JSON document (event data, alarm body). The conditions are
# those of the partial indexes events_positions and alarms_positions, term for term: SQLite
# uses such an index only for a query that says the same.
_JSON_POSITION_KEYS = ("lat", "lon")


def _holds_position(column: str, which: Dialect) -> str:
    if which == "postgresql":  # has_position (schema version 8): its partial indexes' term
        return f"has_position({column})"
    keys = " OR ".join(f"json_type({column}, '$.{k}') IS NOT NULL" for k in _JSON_POSITION_KEYS)
    return f"json_valid({column}) AND ({keys})"


def _without_position(column: str, which: Dialect) -> str:
    if which == "postgresql":  # a JSON object (has_position said so): jsonb drops the keys
        keys = " - ".join(f"'{k}'" for k in _JSON_POSITION_KEYS)
        return f"CAST(CAST({column} AS jsonb) - {keys} AS text)"
    paths = ", ".join(f"'$.{k}'" for k in _JSON_POSITION_KEYS)
    return f"json_remove({column}, {paths})"


@dataclass(frozen=True, slots=True)
class _Source:
    """One table whose rows hold positions: how to find those past their time, and clear one."""

    table: str
    key: str  # the columns naming a row
    condition: str  # with `?` for the cutoff
    clear: str  # an UPDATE of one row, its key bound


def _sources(which: Dialect) -> tuple[_Source, ...]:
    """Where positions are kept, in the SQL of `which` (JSON has no portable functions)."""
    return (
        _Source(
            "telemetry",
            "bus, seq",
            "lat IS NOT NULL AND t < ? AND received < ?",
            f"UPDATE telemetry SET {', '.join(f'{c} = NULL' for c in _POSITION_COLUMNS)}"
            " WHERE bus = ? AND seq = ?",
        ),
        _Source(
            "events",
            "bus, seq",
            f"{_holds_position('data', which)} AND t < ? AND received < ?",
            f"UPDATE events SET data = {_without_position('data', which)}"
            " WHERE bus = ? AND seq = ?",
        ),
        _Source(
            "alarms",
            "id",
            f"state = 'closed' AND {_holds_position('body', which)} AND t < ?",
            f"UPDATE alarms SET body = {_without_position('body', which)} WHERE id = ?",
        ),
    )


_POSITIONS: dict[Dialect, tuple[_Source, ...]] = {d: _sources(d) for d in ("sqlite", "postgresql")}
# Portable upsert (SQLite 3.24+, PostgreSQL): a mark only ever rises.
_RAISE_MARK = (
    "INSERT INTO retention_marks (tbl, bus, seq) VALUES (?, ?, ?)"
    " ON CONFLICT (tbl, bus) DO UPDATE SET seq = CASE WHEN excluded.seq > retention_marks.seq"
    " THEN excluded.seq ELSE retention_marks.seq END"
)
_OTHER_KINDS = ", ".join(f"'{k}'" for k in _EVENT_KINDS.values())
_KIND = EVENT_COLUMNS.index("kind")


@dataclass(frozen=True, slots=True)
class Expired:
    """What a purge would remove of one kind: rows, and the oldest and newest of their times."""

    kind: str
    rows: int
    oldest: float | None
    newest: float | None


def _where(kind: str) -> tuple[str, str]:
    """(table, condition on `t < ?` and `received < ?`, both the cutoff) of a kind's rows."""
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
    positions = [(s.table, s.condition) for s in _POSITIONS[dialect(store)]]
    where = positions if kind == "positions" else [_where(kind)]
    rows, oldest, newest = 0, None, None
    for table, condition in where:
        sql = f"SELECT COUNT(*), MIN(t), MAX(t) FROM {table} WHERE {condition}"
        n, low, high = store.db.execute(sql, _args(condition, cutoff)).fetchone()
        if n:
            rows += int(n)
            oldest = low if oldest is None else min(oldest, low)
            newest = high if newest is None else max(newest, high)
    return Expired(kind, rows, oldest, newest)


def purge_batch(store: CentralStore, kind: str, cutoff: float, limit: int) -> int:
    """Remove at most `limit` rows of `kind` from before `cutoff` in one transaction;
    returns how many (0: none left)."""
    conn = store.db.conn
    with store.transaction():
        if kind == "positions":
            done = 0
            for source in _POSITIONS[dialect(store)]:
                if done < limit:
                    keys = _select(store, source.table, source.key, source.condition, cutoff,
                                   limit - done)  # fmt: skip
                    conn.executemany(source.clear, keys)
                    done += len(keys)
            return done
        if kind == "vehicle":
            keys = _select(store, "telemetry", "bus, seq", _where(kind)[1], cutoff, limit)
            _delete(store, "telemetry", "telemetry", keys)
        elif kind == "events":
            keys = []
            for event_kind in _event_kinds(store):
                if event_kind not in _EVENT_KINDS.values() and len(keys) < limit:
                    condition = "kind = ? AND t < ? AND received < ?"
                    keys += _select(
                        store, "events", "bus, seq", condition, cutoff, limit - len(keys),
                        event_kind,
                    )  # fmt: skip
            _delete(store, "events", kind, keys)
        else:
            keys = _select(store, "events", "bus, seq", _where(kind)[1], cutoff, limit)
            _delete(store, "events", kind, keys)
            if kind == "plays":  # their copies for the report go with them
                conn.executemany("DELETE FROM plays WHERE bus = ? AND seq = ?", keys)
    return len(keys)


def purged_resends(store: CentralStore, table: str, rows: Sequence[Sequence[Any]]) -> int:
    """How many of `rows` (one batch just inserted into `table`, "telemetry" or "events", in
    its column order) were not stored because a purge mark covers them: a record sent again
    after its row was purged, not a duplicate of a stored row. Asked only when some rows were
    not stored; one look-up per bus, and one per row at or below its mark."""
    count = 0
    marks: dict[str, dict[str, int]] = {}
    for row in rows:
        bus, seq = str(row[0]), int(row[1])
        if bus not in marks:
            sql = "SELECT tbl, seq FROM retention_marks WHERE bus = ?"
            marks[bus] = {str(r[0]): int(r[1]) for r in store.db.execute(sql, (bus,))}
        mark = table if table == "telemetry" else _MARK_OF_EVENT.get(str(row[_KIND]), "events")
        if seq <= marks[bus].get(mark, seq - 1):
            stored = f"SELECT 1 FROM {table} WHERE bus = ? AND seq = ?"
            count += store.db.execute(stored, (bus, seq)).fetchone() is None
    return count


def _select(
    store: CentralStore,
    table: str,
    key: str,
    condition: str,
    cutoff: float,
    limit: int,
    *first: str,
) -> list[tuple[Any, ...]]:
    """The keys of the oldest `limit` rows matching (`first` binds leading placeholders)."""
    sql = f"SELECT {key} FROM {table} WHERE {condition} ORDER BY t LIMIT ?"
    args = (*first, *_args(condition, cutoff)[: condition.count("?") - len(first)], limit)
    return [tuple(r) for r in store.db.execute(sql, args)]


def _delete(store: CentralStore, table: str, mark: str, keys: Sequence[tuple[Any, ...]]) -> None:
    """Delete rows by key, raising their buses' marks of `mark` first (same transaction)."""
    highest: dict[str, int] = {}
    for bus, seq in keys:
        highest[bus] = max(seq, highest.get(bus, seq))
    conn = store.db.conn
    conn.executemany(_RAISE_MARK, [(mark, bus, seq) for bus, seq in highest.items()])
    conn.executemany(f"DELETE FROM {table} WHERE bus = ? AND seq = ?", keys)


def _event_kinds(store: CentralStore) -> Iterator[str]:
    """Every event kind stored, each found by one step down the (kind, t) index."""
    sql = "SELECT MIN(kind) FROM events WHERE kind > ?"
    kind = store.db.execute("SELECT MIN(kind) FROM events").fetchone()[0]
    while kind is not None:
        yield str(kind)
        kind = store.db.execute(sql, (kind,)).fetchone()[0]
