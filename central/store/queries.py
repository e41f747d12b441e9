"""Read-only queries over many tables: the dashboard's bus detail, lists and reports, the
driver log, and the journey events central/http/journeys.py follows.

Everything a dashboard asks for is bounded (a limit, a time window): an answer is one MQTT
message. Rows are dicts keyed by column name unless a function says otherwise.

Both backends (backend.py) give the same answers: every ordered read names a total order
(NULLs first, as SQLite puts them; text by bytes, the C collation deploy/postgresql.md asks
for), JSON is read in Python where the rows are few, and the two statements that read JSON in
SQL (`copy_departures`, `driver_ack_time`) have a text per dialect.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from central.store.backend import dialect, is_postgres_url
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
    "save_report_mark",
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
        " ORDER BY sent DESC, id DESC LIMIT ?"
    )
    return _query(store, sql, [bus, limit])


def bus_alarms(store: CentralStore, bus: str, limit: int = 20) -> list[Row]:
    """The bus's newest alarms first: id, kind, severity, state, raised_t."""
    sql = (
        "SELECT id, kind, severity, state, raised_t FROM alarms WHERE bus = ?"
        " ORDER BY raised_t DESC, id DESC LIMIT ?"
    )
    return _query(store, sql, [bus, limit])


# -- the timetable, for pickers and the map ---------------------------------------------------
def route_rows(store: CentralStore) -> list[Row]:
    sql = (
        "SELECT route_id, short_name, long_name, color FROM gtfs_routes"
        " ORDER BY short_name NULLS FIRST, route_id"
    )
    return _query(store, sql)


def trip_rows(store: CentralStore, route: str | None = None, limit: int = 500) -> list[Row]:
    """Trips (of one route) by first departure: trip_id, route_id, headsign, direction_id,
    block_id, start_s."""
    where, params = ("WHERE route_id = ?", [route]) if route is not None else ("", [])
    sql = (
        "SELECT trip_id, route_id, headsign, direction_id, block_id,"
        " (SELECT departure_s FROM gtfs_stop_times s WHERE s.trip_id = t.trip_id"
        " ORDER BY stop_sequence LIMIT 1) AS start_s"
        f" FROM gtfs_trips t {where} ORDER BY start_s NULLS FIRST, trip_id LIMIT ?"
    )
    return _query(store, sql, [*params, limit])


def block_rows(store: CentralStore, limit: int = 1000) -> list[Row]:
    """Blocks by id: block_id, trips (how many), routes (comma-separated, sorted). The routes
    are joined here, not by GROUP_CONCAT / string_agg: one text on both backends, in one order."""
    sql = (
        "SELECT block_id, route_id, COUNT(*) FROM gtfs_trips WHERE block_id IN ("
        "  SELECT DISTINCT block_id FROM gtfs_trips WHERE block_id IS NOT NULL"
        "  ORDER BY block_id LIMIT ?)"
        " GROUP BY block_id, route_id ORDER BY block_id, route_id"
    )
    out: dict[Any, Row] = {}
    for block, route, trips in store.db.execute(sql, [limit]):
        row = out.setdefault(block, {"block_id": block, "trips": 0, "routes": []})
        row["trips"] += int(trips)
        if route is not None:
            row["routes"].append(str(route))
    for row in out.values():
        row["routes"] = ",".join(row["routes"])
    return list(out.values())


def stop_rows(store: CentralStore, limit: int = 5000) -> list[Row]:
    """Stops with a position: stop_id, name, lat, lon."""
    sql = (
        "SELECT stop_id, name, lat, lon FROM gtfs_stops WHERE lat IS NOT NULL"
        " ORDER BY stop_id LIMIT ?"
    )
    return _query(store, sql, [limit])


def shape_choices(store: CentralStore) -> list[tuple[str, Any, str]]:
    """(route_id, direction_id, shape_id) by route and direction, the most used shape first
    (of shapes used alike, the first by id)."""
    sql = (
        "SELECT route_id, direction_id, shape_id, COUNT(*) AS n FROM gtfs_trips"
        " WHERE shape_id IS NOT NULL GROUP BY route_id, direction_id, shape_id"
        " ORDER BY route_id, direction_id NULLS FIRST, n DESC, shape_id"
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
        " status FROM messages ORDER BY created DESC, id LIMIT ?"
    )
    return _query(store, sql, [limit])


# -- reports ----------------------------------------------------------------------------------
def feedback_rows(store: CentralStore, since: float, limit: int = 300) -> list[Row]:
    """Passenger feedback since `since`, newest first: t, bus, category, text (each None
    unless the event's data is a JSON object with a string, number or boolean there: data
    that is no JSON is listed, never an error)."""
    sql = (
        "SELECT t, bus, data FROM events WHERE kind = 'passenger_feedback' AND t >= ?"
        " ORDER BY t DESC, bus DESC, seq DESC LIMIT ?"
    )
    out = []
    for t, bus, data in store.db.execute(sql, [since, limit]):
        doc = _json_object(data)
        category, text = (_json_scalar(doc.get(key)) for key in ("category", "text"))
        out.append({"t": t, "bus": bus, "category": category, "text": text})
    return out


def _json_object(data: str | bytes | None) -> dict[str, Any]:
    try:
        doc = json.loads(data) if data is not None else None
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _json_scalar(value: Any) -> str | int | float | bool | None:
    return value if isinstance(value, str | int | float | bool) else None


# The departed events' route and delay (NULLs where the data is no JSON, the route no string
# or number, the delay no number), in each dialect; PostgreSQL's json_field and json_number
# (pg_schema.py, migration 9) never raise. The row comparison gives PostgreSQL's scan of the
# partial index events_departed (kind, received) its start (ads.py's plays copy says why).
_COPY_DEPARTURES = {
    "sqlite": """
INSERT OR IGNORE INTO departures (bus, seq, t, route, delay_s)
SELECT bus, seq, t, CASE WHEN json_valid(data) THEN json_extract(data, '$.route') END,
       CASE WHEN json_valid(data) THEN CASE WHEN json_type(data, '$.delay_s')
            IN ('integer', 'real') THEN json_extract(data, '$.delay_s') END END
FROM events WHERE kind = 'departed' AND received > :since
""",
    "postgresql": """
INSERT OR IGNORE INTO departures (bus, seq, t, route, delay_s)
SELECT bus, seq, t, json_field(data, 'route'), json_number(data, 'delay_s')
FROM events WHERE kind = 'departed' AND received > :since
  AND (kind, received) > ('departed', :since)
""",
}


def save_report_mark(store: CentralStore, name: str, received: float) -> None:
    """The newest arrival the report table `name` has copied (`copy_departures`, ads.py's
    `copy_plays`)."""
    sql = (
        "INSERT INTO report_marks (name, received) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET received = excluded.received"
    )
    store.db.conn.execute(sql, (name, received))


def copy_departures(store: CentralStore, settle_s: float) -> int:
    """Copy the `departed` events that arrived since the last copy into `departures` (as
    central/store/ads.py's `copy_plays` does the plays); returns how many."""
    conn = store.db.conn
    with store.transaction():
        row = conn.execute("SELECT received FROM report_marks WHERE name = 'departures'").fetchone()
        since = -1.0 if row is None else row[0] - settle_s
        copied = conn.execute(_COPY_DEPARTURES[dialect(store)], {"since": since}).rowcount
        newest = conn.execute("SELECT MAX(received) FROM events WHERE kind = 'departed'")
        received = newest.fetchone()[0]
        if received is not None:
            save_report_mark(store, "departures", received)
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
    """(bus, t, kind, severity, data, received) of events of `kinds` since `since`, oldest
    first."""
    only_bus, params = ("", [since]) if bus is None else (" AND bus = ?", [since, bus])
    marks = ",".join("?" * len(kinds))
    sql = (
        "SELECT bus, t, kind, severity, data, received FROM events"
        f" WHERE t >= ?{only_bus} AND kind IN ({marks}) ORDER BY t, bus, seq"
    )
    return [tuple(r) for r in store.db.execute(sql, [*params, *kinds])]


def sent_commands(
    store: CentralStore, since: float, name: str, bus: str | None = None
) -> list[tuple[Any, ...]]:
    """(id, bus, sent, args, status, answered) of commands `name` sent since `since`, oldest
    first."""
    only_bus, params = ("", [since]) if bus is None else (" AND bus = ?", [since, bus])
    sql = (
        "SELECT id, bus, sent, args, status, answered FROM commands"
        f" WHERE sent >= ?{only_bus} AND name = ? ORDER BY sent, bus, id"
    )
    return [tuple(r) for r in store.db.execute(sql, [*params, name])]


_ACK_TIME = {
    "sqlite": "SELECT MIN(t) FROM events WHERE bus = ? AND kind = 'driver_ack'"
    " AND CASE WHEN json_valid(data) THEN json_extract(data, '$.id') END = ?",
    "postgresql": "SELECT MIN(t) FROM events WHERE bus = ? AND kind = 'driver_ack'"
    " AND json_field(data, 'id') = ?",
}


def driver_ack_time(store: CentralStore, bus: str, message_id: str) -> float | None:
    """When the bus's driver first acknowledged the message, if they did (an event whose
    data is no JSON acknowledges nothing)."""
    row = store.db.execute(_ACK_TIME[dialect(store)], (bus, message_id)).fetchone()
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
def _read_one(db: str | Path, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    """One row of `sql` (SQLite's dialect, portable) from central's database `db` (a file or a
    PostgreSQL URL), opened read-only: never created, migrated or written. None while central
    has not created it or its tables yet."""
    if is_postgres_url(str(db)):
        return _read_one_postgres(str(db), sql, params)
    if not Path(db).exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            row: tuple[Any, ...] = conn.execute(sql, params).fetchone()
        except sqlite3.OperationalError:  # no table yet
            return None
    return row


def _read_one_postgres(url: str, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    import psycopg  # only for a URL: a SQLite reader never loads it

    from central.store.pg_sql import translate

    options = "-c default_transaction_read_only=on"
    try:
        with psycopg.connect(url, options=options, autocommit=True) as conn:
            return conn.execute(translate(sql), params).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidCatalogName):
        return None  # no table, no database yet


def telemetry_counts(db: str | Path) -> tuple[int, int] | None:
    """(buses with telemetry stored, positions stored) in central's database `db` (a file or
    a PostgreSQL URL), opened read-only; None while central has not created it or its tables
    yet."""
    row = _read_one(db, "SELECT COUNT(DISTINCT bus), COUNT(lat) FROM telemetry")
    return None if row is None else (int(row[0]), int(row[1]))


def event_count(db: str | Path, kinds: Sequence[str]) -> int | None:
    """How many events of `kinds` (all buses) central's database `db` (a file or a PostgreSQL
    URL) holds, opened read-only; None while central has not created it or its tables yet."""
    marks = ",".join("?" * len(kinds))
    row = _read_one(db, f"SELECT COUNT(*) FROM events WHERE kind IN ({marks})", list(kinds))
    return None if row is None else int(row[0])
