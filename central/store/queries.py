"""Read-only queries over many tables: the dashboard's bus detail, lists and reports, the
driver log, and the journey events central/http/journeys.py follows.

Everything a dashboard asks for is bounded (a limit, a time window): an answer is one MQTT
message. Rows are dicts keyed by column name unless a function says otherwise.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from central.store.db import CentralStore

__all__ = [
    "VEHICLE_COLUMNS",
    "block_rows",
    "bus_alarms",
    "bus_commands",
    "bus_events",
    "copy_departures",
    "departure_delays",
    "driver_ack_time",
    "event_count",
    "event_rows_since",
    "feedback_rows",
    "latest_event_of",
    "latest_event_seq",
    "latest_vehicle",
    "message_list",
    "play_hour_totals",
    "route_rows",
    "sent_commands",
    "shape_choices",
    "shape_points",
    "stop_rows",
    "telemetry_counts",
    "trip_rows",
]

Row = dict[str, Any]

# The telemetry columns the bus detail shows, in the order it shows them.
VEHICLE_COLUMNS = (
    "t",
    "lat",
    "lon",
    "speed",
    "hdop",
    "sats",
    "estimated",
    "speed_kmh",
    "rpm",
    "doors_open",
    "coolant_c",
    "fuel_pct",
    "odometer_m",
)


def _query(store: CentralStore, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    return list(store.db.query(sql, params))


# -- one bus ----------------------------------------------------------------------------------
def latest_vehicle(store: CentralStore, bus: str) -> Row | None:
    """The bus's newest telemetry row (`VEHICLE_COLUMNS`)."""
    sql = f"SELECT {', '.join(VEHICLE_COLUMNS)} FROM telemetry WHERE bus = ? ORDER BY seq DESC"
    return next(iter(_query(store, sql + " LIMIT 1", [bus])), None)


def bus_events(store: CentralStore, bus: str, limit: int = 30) -> list[Row]:
    """The bus's newest events first: t, kind, severity, data, backfill."""
    sql = (
        "SELECT t, kind, severity, data, backfill FROM events WHERE bus = ?"
        " ORDER BY seq DESC LIMIT ?"
    )
    return _query(store, sql, [bus, limit])


def bus_commands(store: CentralStore, bus: str, limit: int = 20) -> list[Row]:
    """The commands last sent to the bus, newest first."""
    sql = (
        "SELECT id, name, args, sent, status, reason, answered FROM commands WHERE bus = ?"
        " ORDER BY sent DESC LIMIT ?"
    )
    return _query(store, sql, [bus, limit])


def bus_alarms(store: CentralStore, bus: str, limit: int = 20) -> list[Row]:
    """The bus's newest alarms first: id, kind, severity, state, raised_t."""
    sql = (
        "SELECT id, kind, severity, state, raised_t FROM alarms WHERE bus = ?"
        " ORDER BY raised_t DESC LIMIT ?"
    )
    return _query(store, sql, [bus, limit])


# -- the timetable, for pickers and the map ---------------------------------------------------
def route_rows(store: CentralStore) -> list[Row]:
    sql = "SELECT route_id, short_name, long_name, color FROM gtfs_routes ORDER BY short_name"
    return _query(store, sql)


def trip_rows(store: CentralStore, route: str | None = None, limit: int = 500) -> list[Row]:
    """Trips (of one route) by first departure: trip_id, route_id, headsign, direction_id,
    block_id, start_s."""
    where, params = ("WHERE route_id = ?", [route]) if route is not None else ("", [])
    sql = (
        "SELECT trip_id, route_id, headsign, direction_id, block_id,"
        " (SELECT departure_s FROM gtfs_stop_times s WHERE s.trip_id = t.trip_id"
        " ORDER BY stop_sequence LIMIT 1) AS start_s"
        f" FROM gtfs_trips t {where} ORDER BY start_s, trip_id LIMIT ?"
    )
    return _query(store, sql, [*params, limit])


def block_rows(store: CentralStore, limit: int = 1000) -> list[Row]:
    """Blocks: block_id, trips (how many), routes (comma-separated)."""
    sql = (
        "SELECT block_id, COUNT(*) AS trips, GROUP_CONCAT(DISTINCT route_id) AS routes"
        " FROM gtfs_trips WHERE block_id IS NOT NULL GROUP BY block_id"
        " ORDER BY block_id LIMIT ?"
    )
    return _query(store, sql, [limit])


def stop_rows(store: CentralStore, limit: int = 5000) -> list[Row]:
    """Stops with a position: stop_id, name, lat, lon."""
    sql = "SELECT stop_id, name, lat, lon FROM gtfs_stops WHERE lat IS NOT NULL LIMIT ?"
    return _query(store, sql, [limit])


def shape_choices(store: CentralStore) -> list[tuple[str, Any, str]]:
    """(route_id, direction_id, shape_id) by route and direction, the most used shape first."""
    sql = (
        "SELECT route_id, direction_id, shape_id, COUNT(*) AS n FROM gtfs_trips"
        " WHERE shape_id IS NOT NULL GROUP BY route_id, direction_id, shape_id"
        " ORDER BY route_id, direction_id, n DESC"
    )
    return [(r[0], r[1], r[2]) for r in store.db.execute(sql)]


def shape_points(store: CentralStore, shape_id: str) -> list[tuple[float, float]]:
    """(lat, lon) of a shape's points, in order."""
    sql = "SELECT lat, lon FROM gtfs_shapes WHERE shape_id = ? ORDER BY seq"
    return [(r[0], r[1]) for r in store.db.execute(sql, [shape_id])]


def message_list(store: CentralStore, limit: int = 200) -> list[Row]:
    """Passenger messages, newest first, without their end time."""
    sql = (
        "SELECT id, created, text_de, text_en, priority, targets, valid_from, valid_to,"
        " status FROM messages ORDER BY created DESC LIMIT ?"
    )
    return _query(store, sql, [limit])


# -- reports ----------------------------------------------------------------------------------
def feedback_rows(store: CentralStore, since: float, limit: int = 300) -> list[Row]:
    """Passenger feedback since `since`, newest first: t, bus, category, text."""
    sql = (
        "SELECT t, bus, json_extract(data, '$.category') AS category,"
        " json_extract(data, '$.text') AS text FROM events"
        " WHERE kind = 'passenger_feedback' AND t >= ? ORDER BY t DESC LIMIT ?"
    )
    return _query(store, sql, [since, limit])


_COPY_DEPARTURES = """
INSERT OR IGNORE INTO departures (bus, seq, t, route, delay_s)
SELECT bus, seq, t, CASE WHEN json_valid(data) THEN json_extract(data, '$.route') END,
       CASE WHEN json_valid(data) THEN CASE WHEN json_type(data, '$.delay_s')
            IN ('integer', 'real') THEN json_extract(data, '$.delay_s') END END
FROM events WHERE kind = 'departed' AND received > ?
"""


def copy_departures(store: CentralStore, settle_s: float) -> int:
    """Copy the `departed` events that arrived since the last copy into `departures` (as
    central/store/ads.py's `copy_plays` does the plays); returns how many."""
    conn = store.db.conn
    with store.transaction():
        row = conn.execute("SELECT received FROM report_marks WHERE name = 'departures'").fetchone()
        since = -1.0 if row is None else row[0] - settle_s
        copied = conn.execute(_COPY_DEPARTURES, (since,)).rowcount
        newest = conn.execute("SELECT MAX(received) FROM events WHERE kind = 'departed'")
        received = newest.fetchone()[0]
        if received is not None:
            store.db.table("report_marks").upsert(
                {"name": "departures", "received": received}, pk="name"
            )
    return int(copied)


def departure_delays(store: CentralStore, since: float) -> list[tuple[Any, Any, int]]:
    """(route, delay_s, departures) of the departures since `since`, as the buses reported
    them, one row per route and delay: a month of a fleet's departures is a million rows,
    their distinct (route, delay) pairs a few thousand, and only those leave SQLite. From
    `departures` (the `departed` events' route and delay, copied by `copy_departures`), in
    the order of its covering index: no sort, no event's JSON read."""
    sql = "SELECT route, delay_s, COUNT(*) FROM departures WHERE t >= ? GROUP BY route, delay_s"
    return [(r[0], r[1], int(r[2])) for r in store.db.execute(sql, [since])]


def play_hour_totals(
    store: CentralStore, start: float, end: float
) -> list[tuple[str, str, str, int, float]]:
    """(item, route, bus, plays, seconds on screen) of the plays in [start, end), both whole
    hours (unix time), from `play_hours`: as central/store/ads.py's `play_totals` over `plays`,
    but reading one row per hour, item, route and bus instead of one per play."""
    if start % 3600 or end % 3600:
        raise ValueError("play_hours has whole hours only")
    sql = (
        "SELECT item, route, bus, SUM(plays), SUM(seconds) FROM play_hours"
        " WHERE hour >= ? AND hour < ? GROUP BY item, route, bus ORDER BY item, route, bus"
    )
    rows = store.db.execute(sql, (int(start // 3600), int(end // 3600))).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows]


# -- the driver log ---------------------------------------------------------------------------
def event_rows_since(
    store: CentralStore, since: float, kinds: Sequence[str], bus: str | None = None
) -> list[tuple[Any, ...]]:
    """(bus, t, kind, severity, data, received) of events of `kinds` since `since`."""
    only_bus, params = ("", [since]) if bus is None else (" AND bus = ?", [since, bus])
    marks = ",".join("?" * len(kinds))
    sql = (
        "SELECT bus, t, kind, severity, data, received FROM events"
        f" WHERE t >= ?{only_bus} AND kind IN ({marks})"
    )
    return [tuple(r) for r in store.db.execute(sql, [*params, *kinds])]


def sent_commands(
    store: CentralStore, since: float, name: str, bus: str | None = None
) -> list[tuple[Any, ...]]:
    """(id, bus, sent, args, status, answered) of commands `name` sent since `since`."""
    only_bus, params = ("", [since]) if bus is None else (" AND bus = ?", [since, bus])
    sql = (
        "SELECT id, bus, sent, args, status, answered FROM commands"
        f" WHERE sent >= ?{only_bus} AND name = ?"
    )
    return [tuple(r) for r in store.db.execute(sql, [*params, name])]


def driver_ack_time(store: CentralStore, bus: str, message_id: str) -> float | None:
    """When the bus's driver first acknowledged the message, if they did."""
    sql = (
        "SELECT MIN(t) FROM events WHERE bus = ? AND kind = 'driver_ack'"
        " AND json_extract(data, '$.id') = ?"
    )
    row = store.db.execute(sql, (bus, message_id)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


# -- journeys ---------------------------------------------------------------------------------
def latest_event_seq(store: CentralStore, bus: str) -> int | None:
    """The sequence number of the bus's newest event; None if it has none."""
    row = store.db.execute("SELECT MAX(seq) FROM events WHERE bus = ?", [bus]).fetchone()
    return None if row[0] is None else int(row[0])


def latest_event_of(
    store: CentralStore, bus: str, after_seq: int, kinds: Sequence[str]
) -> tuple[float, str, str] | None:
    """(t, kind, data) of the bus's newest event of `kinds` after `after_seq`."""
    marks = ",".join("?" * len(kinds))
    sql = (
        f"SELECT t, kind, data FROM events WHERE bus = ? AND seq > ? AND kind IN ({marks})"
        " ORDER BY seq DESC LIMIT 1"
    )
    row = store.db.execute(sql, [bus, after_seq, *kinds]).fetchone()
    return None if row is None else (row[0], row[1], row[2])


# -- from outside central: a reader beside a running central (the demo's figures) ------------
@contextlib.contextmanager
def _read_only(path: str | Path) -> Iterator[sqlite3.Connection | None]:
    """Central's database opened read-only: never created, migrated or written; None when
    the file is not there yet."""
    if not Path(path).exists():
        yield None
        return
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        yield conn


def telemetry_counts(path: str | Path) -> tuple[int, int] | None:
    """(buses with telemetry stored, positions stored) in central's database at `path`,
    opened read-only; None while central has not created it or its tables yet."""
    with _read_only(path) as conn:
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT COUNT(DISTINCT bus), COUNT(lat) FROM telemetry").fetchone()
        except sqlite3.OperationalError:  # no table yet
            return None
    return int(row[0]), int(row[1])


def event_count(path: str | Path, kinds: Sequence[str]) -> int | None:
    """How many events of `kinds` (all buses) central's database at `path` holds, opened
    read-only; None while central has not created it or its tables yet."""
    marks = ",".join("?" * len(kinds))
    with _read_only(path) as conn:
        if conn is None:
            return None
        try:
            row = conn.execute(
                f"SELECT COUNT(*) FROM events WHERE kind IN ({marks})", list(kinds)
            ).fetchone()
        except sqlite3.OperationalError:  # no table yet
            return None
    return int(row[0])
