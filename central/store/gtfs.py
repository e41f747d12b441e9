"""Reading the imported GTFS timetable from central's store (tables of migration 4).

Small lookups that assignments, passenger messages and the GTFS-Realtime feed need. Each
function works whether or not a feed was imported: without one, `feed_info` is None and
lookups find nothing, and callers decide what that means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from central.store.db import CentralStore
from protocols import codec
from protocols.schemas import Assignment

__all__ = [
    "FeedInfo",
    "TripInfo",
    "block_routes",
    "feed_info",
    "route_exists",
    "routes_of",
    "stop_at",
    "timezone",
    "trip",
]


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """The feed in the store: where it came from, when, and its counts."""

    source: str
    imported: float
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TripInfo:
    trip_id: str
    route_id: str
    service_id: str
    block_id: str | None
    headsign: str
    direction_id: int | None
    start_s: int | None  # first departure, seconds from the service day's start


def feed_info(store: CentralStore) -> FeedInfo | None:
    row = store.db.execute("SELECT source, imported, summary FROM gtfs_feed").fetchone()
    if row is None:
        return None
    return FeedInfo(row[0], row[1], codec.decode_json(row[2]))


def trip(store: CentralStore, trip_id: str) -> TripInfo | None:
    row = store.db.execute(
        "SELECT trip_id, route_id, service_id, block_id, headsign, direction_id,"
        " (SELECT departure_s FROM gtfs_stop_times s WHERE s.trip_id = t.trip_id"
        "  ORDER BY stop_sequence LIMIT 1)"
        " FROM gtfs_trips t WHERE trip_id = ?",
        [trip_id],
    ).fetchone()
    return None if row is None else TripInfo(*row)


def route_exists(store: CentralStore, route_id: str) -> bool:
    sql = "SELECT 1 FROM gtfs_routes WHERE route_id = ?"
    return store.db.execute(sql, [route_id]).fetchone() is not None


def block_routes(store: CentralStore, block_id: str) -> set[str]:
    """The routes the trips of a block run on (empty: no such block)."""
    sql = "SELECT DISTINCT route_id FROM gtfs_trips WHERE block_id = ?"
    return {r[0] for r in store.db.execute(sql, [block_id])}


def routes_of(store: CentralStore, assignment: Assignment | None) -> set[str]:
    """The routes an assignment puts a bus on: its route, its trip's, its block's trips'.

    Without an imported feed only an explicit route_id is known.
    """
    if assignment is None:
        return set()
    routes = {assignment.route_id} if assignment.route_id else set()
    if assignment.trip_id:
        info = trip(store, assignment.trip_id)
        if info is not None:
            routes.add(info.route_id)
    if assignment.block_id:
        routes |= block_routes(store, assignment.block_id)
    return routes


def stop_at(store: CentralStore, trip_id: str, index: int) -> tuple[str, int] | None:
    """The (stop_id, stop_sequence) of a trip's `index`-th call (0-based), if there is one."""
    if index < 0:
        return None
    row = store.db.execute(
        "SELECT stop_id, stop_sequence FROM gtfs_stop_times WHERE trip_id = ?"
        " ORDER BY stop_sequence LIMIT 1 OFFSET ?",
        [trip_id, index],
    ).fetchone()
    return None if row is None else (row[0], int(row[1]))


def timezone(store: CentralStore) -> str | None:
    """The feed's timezone (agency.txt), in which its service days and times count."""
    row = store.db.execute(
        "SELECT timezone FROM gtfs_agency WHERE timezone != '' LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])


def route_stops(store: CentralStore, route_id: str) -> set[str]:
    """The stops any trip of the route calls at."""
    sql = (
        "SELECT DISTINCT s.stop_id FROM gtfs_stop_times s JOIN gtfs_trips t"
        " ON s.trip_id = t.trip_id WHERE t.route_id = ?"
    )
    return {str(r[0]) for r in store.db.execute(sql, [route_id])}


def trip_calls(store: CentralStore, trip_id: str) -> list[tuple[str, int]]:
    """(stop_id, stop_sequence) of a trip's calls, in order."""
    sql = (
        "SELECT stop_id, stop_sequence FROM gtfs_stop_times WHERE trip_id = ?"
        " ORDER BY stop_sequence"
    )
    return [(str(s), int(q)) for s, q in store.db.execute(sql, [trip_id])]


def route_names(store: CentralStore, route_id: str) -> tuple[str | None, str | None] | None:
    """(short_name, long_name) of a route; None if the timetable lacks it."""
    sql = "SELECT short_name, long_name FROM gtfs_routes WHERE route_id = ?"
    row = store.db.execute(sql, [route_id]).fetchone()
    return None if row is None else (row[0], row[1])


def stop_name(store: CentralStore, stop_id: str) -> str | None:
    """The stop's name ('' or None when it has none); None also if the timetable lacks it."""
    row = store.db.execute("SELECT name FROM gtfs_stops WHERE stop_id = ?", [stop_id]).fetchone()
    return None if row is None else row[0]
