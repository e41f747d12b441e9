"""Timetable versions, their items, publications and each bus's version (migration 7).

The rules are central/timetables.py's. A version is a row (`timetable_versions`) and, per
route, stop and trip, one row of `timetable_items` with a fingerprint of what a bus would
see of it (a trip's fingerprint covers its stop times), so that an assignment can be checked
against the version a bus runs and two versions compared without a second copy of the stop
times. The package itself is a file (central/timetables.py writes it by its hash).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from central.store.backend import Dialect, dialect
from central.store.db import CentralStore

__all__ = [
    "KINDS",
    "VERSION_COLUMNS",
    "add_items",
    "add_publication",
    "add_version",
    "block_exists",
    "bus_timetable",
    "buses_per_version",
    "buses_without_timetable",
    "changes",
    "current_feed_version",
    "feed_routes",
    "feed_stops",
    "feed_trip_calls",
    "item_exists",
    "next_version",
    "previous_version",
    "publications",
    "set_bus_timetable",
    "trip_item",
    "version_row",
    "versions",
]

KINDS = ("route", "stop", "trip")
VERSION_COLUMNS = ("version", "imported", "source", "summary", "sha256", "size")
_SELECT = ", ".join(VERSION_COLUMNS)


def next_version(store: CentralStore) -> int:
    row = store.db.execute("SELECT MAX(version) FROM timetable_versions").fetchone()
    return int(row[0] or 0) + 1


def add_version(store: CentralStore, row: dict[str, Any]) -> None:
    marks = ", ".join("?" * len(VERSION_COLUMNS))
    store.db.execute(
        f"INSERT INTO timetable_versions ({_SELECT}) VALUES ({marks})",
        [row[c] for c in VERSION_COLUMNS],
    )


def add_items(
    store: CentralStore, version: int, rows: Iterable[tuple[str, str, str, str | None, str | None]]
) -> None:
    """(kind, id, fingerprint, route_id, block_id) of one version."""
    store.db.conn.executemany(
        "INSERT INTO timetable_items (version, kind, id, fingerprint, route_id, block_id)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(version, kind, id) DO UPDATE SET"
        " fingerprint = excluded.fingerprint, route_id = excluded.route_id,"
        " block_id = excluded.block_id",
        ((version, *r) for r in rows),
    )


def versions(store: CentralStore) -> list[dict[str, Any]]:
    """Every version, oldest first."""
    return list(store.db.query(f"SELECT {_SELECT} FROM timetable_versions ORDER BY version"))


def version_row(store: CentralStore, version: int) -> dict[str, Any] | None:
    rows = list(
        store.db.query(f"SELECT {_SELECT} FROM timetable_versions WHERE version = ?", [version])
    )
    return rows[0] if rows else None


def previous_version(store: CentralStore, version: int) -> int | None:
    sql = "SELECT MAX(version) FROM timetable_versions WHERE version < ?"
    row = store.db.execute(sql, [version]).fetchone()
    return None if row[0] is None else int(row[0])


# -- reading the imported feed (the gtfs_* tables) for the fingerprints ------------------------
def feed_routes(store: CentralStore) -> Iterator[tuple[Any, ...]]:
    """Every route row, the route_id first."""
    yield from store.db.execute("SELECT * FROM gtfs_routes ORDER BY route_id")


def feed_stops(store: CentralStore) -> Iterator[tuple[Any, ...]]:
    """Every stop row, the stop_id first."""
    yield from store.db.execute("SELECT * FROM gtfs_stops ORDER BY stop_id")


def feed_trip_calls(store: CentralStore) -> Iterator[tuple[Any, ...]]:
    """(trip_id, route_id, service_id, shape_id, headsign, direction_id, block_id,
    stop_sequence, stop_id, arrival_s, departure_s) for every call of every trip, a trip's
    calls together and in order (a trip without calls: one row with None calls). Streamed:
    millions of stop times need no memory."""
    cursor = store.db.conn.cursor()
    cursor.execute(
        "SELECT t.trip_id, t.route_id, t.service_id, t.shape_id, t.headsign, t.direction_id,"
        " t.block_id, s.stop_sequence, s.stop_id, s.arrival_s, s.departure_s"
        " FROM gtfs_trips t LEFT JOIN gtfs_stop_times s ON s.trip_id = t.trip_id"
        " ORDER BY t.trip_id, s.stop_sequence"
    )
    try:
        yield from cursor
    finally:
        cursor.close()


# -- what a version holds ----------------------------------------------------------------------
def item_exists(store: CentralStore, version: int, kind: str, item: str) -> bool:
    sql = "SELECT 1 FROM timetable_items WHERE version = ? AND kind = ? AND id = ?"
    return store.db.execute(sql, [version, kind, item]).fetchone() is not None


def trip_item(store: CentralStore, version: int, trip_id: str) -> tuple[str, str | None] | None:
    """(route_id, block_id) of a trip of this version; None if the version lacks it."""
    sql = (
        "SELECT route_id, block_id FROM timetable_items"
        " WHERE version = ? AND kind = 'trip' AND id = ?"
    )
    row = store.db.execute(sql, [version, trip_id]).fetchone()
    return None if row is None else (str(row[0]), row[1])


def block_exists(store: CentralStore, version: int, block_id: str) -> bool:
    sql = "SELECT 1 FROM timetable_items WHERE version = ? AND block_id = ? LIMIT 1"
    return store.db.execute(sql, [version, block_id]).fetchone() is not None


_ADDED = (
    "FROM timetable_items n WHERE n.version = :new AND n.kind = :kind AND NOT EXISTS"
    " (SELECT 1 FROM timetable_items o WHERE o.version = :old AND o.kind = :kind AND o.id = n.id)"
)
_REMOVED = (
    "FROM timetable_items n WHERE n.version = :old AND n.kind = :kind AND NOT EXISTS"
    " (SELECT 1 FROM timetable_items o WHERE o.version = :new AND o.kind = :kind AND o.id = n.id)"
)
_CHANGED = (
    "FROM timetable_items n JOIN timetable_items o ON o.version = :old AND o.kind = :kind"
    " AND o.id = n.id WHERE n.version = :new AND n.kind = :kind"
    " AND o.fingerprint != n.fingerprint"
)


def changes(
    store: CentralStore, old: int, new: int, kind: str, limit: int
) -> dict[str, tuple[int, list[str]]]:
    """Items of `kind` added, removed and changed from version `old` to `new`: for each, how
    many and the first `limit` ids (in id order)."""
    args = {"old": old, "new": new, "kind": kind}
    out: dict[str, tuple[int, list[str]]] = {}
    for what, where in (("added", _ADDED), ("removed", _REMOVED), ("changed", _CHANGED)):
        count = int(store.db.execute(f"SELECT COUNT(*) {where}", args).fetchone()[0])
        ids = store.db.execute(
            f"SELECT n.id {where} ORDER BY n.id LIMIT :limit", {**args, "limit": limit}
        )
        out[what] = (count, [str(r[0]) for r in ids])
    return out


# -- publications and the buses' versions ------------------------------------------------------
def add_publication(
    store: CentralStore, version: int, targets: str, ref: bytes, published: float, by: str
) -> int:
    row = store.db.execute(  # RETURNING: SQLite 3.35+ and PostgreSQL; no lastrowid there
        "INSERT INTO timetable_publications (version, targets, ref, published, by)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        [version, targets, ref, published, by],
    ).fetchone()
    return int(row[0])


def publications(store: CentralStore) -> list[dict[str, Any]]:
    """Every publication, newest first: id, version, targets (JSON), ref (bytes), published."""
    return list(
        store.db.query(
            "SELECT id, version, targets, ref, published, by FROM timetable_publications"
            " ORDER BY id DESC"
        )
    )


def set_bus_timetable(store: CentralStore, bus: str, version: int, publication: int) -> None:
    store.db.execute(
        "INSERT INTO bus_timetables (bus, version, publication) VALUES (?, ?, ?)"
        " ON CONFLICT(bus) DO UPDATE SET version = excluded.version,"
        " publication = excluded.publication",
        [bus, version, publication],
    )


def bus_timetable(store: CentralStore, bus: str) -> int | None:
    """The version last published to this bus."""
    row = store.db.execute("SELECT version FROM bus_timetables WHERE bus = ?", [bus]).fetchone()
    return None if row is None else int(row[0])


def bus_publication(store: CentralStore, bus: str) -> int | None:
    """The publication that last gave this bus its timetable."""
    sql = "SELECT publication FROM bus_timetables WHERE bus = ?"
    row = store.db.execute(sql, [bus]).fetchone()
    return None if row is None else int(row[0])


def buses_without_timetable(store: CentralStore) -> list[str]:
    """Buses central knows (a fleet entry or a desired document) that were never given a
    timetable: the newcomers a publication to "all" or a group may cover."""
    sql = (
        "SELECT bus FROM (SELECT bus FROM buses UNION SELECT bus FROM desired) AS known"
        " WHERE bus NOT IN (SELECT bus FROM bus_timetables) ORDER BY bus"
    )
    return [str(r[0]) for r in store.db.execute(sql)]


def buses_per_version(store: CentralStore) -> dict[int, int]:
    """How many buses were last given each version."""
    sql = "SELECT version, COUNT(*) FROM bus_timetables GROUP BY version"
    return {int(v): int(n) for v, n in store.db.execute(sql)}


def current_feed_version(store: CentralStore) -> int | None:
    """The timetable version of the feed in the gtfs_* tables (its summary says it)."""
    row = store.db.execute(_FEED_VERSION[dialect(store)]).fetchone()
    return None if row is None or row[0] is None else int(row[0])


_FEED_VERSION: dict[Dialect, str] = {
    "sqlite": "SELECT json_extract(summary, '$.timetable_version') FROM gtfs_feed",
    # the summary is central's own JSON object; NULL when it has no version
    "postgresql": (
        "SELECT CAST(CAST(summary AS jsonb) ->> 'timetable_version' AS bigint) FROM gtfs_feed"
    ),
}
