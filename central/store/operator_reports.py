"""What the operator reports read (central/operator_reports.py): the service calendar and the
planned trips, the buses' journey events, the odometer and running time of the telemetry per
time bucket, departures per route, stop and hour, and one bus's positions for a replay.

Both backends answer alike (backend.py). The telemetry is aggregated in SQL, per bus and time
bucket (a whole hour, or a quarter for zones with half-hour offsets), with window functions
(LAG over the bus's samples in order): a month of a fleet's telemetry never leaves the
database, only one row per bus and bucket does. JSON of events is read in SQL with one text
per dialect, as predictions.py does; data that is no JSON is skipped, never an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from central.store.backend import dialect
from central.store.db import CentralStore

__all__ = [
    "calendar_rows",
    "departure_buckets",
    "journey_rows",
    "odometer_buckets",
    "planned_trip_rows",
    "positions",
    "running_buckets",
]

JOURNEY_KINDS = ("arrived", "departed", "passed", "trip_started", "trip_finished")


def calendar_rows(
    store: CentralStore,
) -> tuple[list[tuple[str, int, str, str]], list[tuple[str, str, int]]]:
    """((service_id, days, start_date, end_date) of calendar.txt, (service_id, date,
    exception_type) of calendar_dates.txt) of the imported feed."""
    services = store.db.execute(
        "SELECT service_id, days, start_date, end_date FROM gtfs_calendar ORDER BY service_id"
    ).fetchall()
    dates = store.db.execute(
        "SELECT service_id, date, exception_type FROM gtfs_calendar_dates ORDER BY service_id, date"
    ).fetchall()
    return (
        [(str(a), int(b), str(c), str(d)) for a, b, c, d in services],
        [(str(a), str(b), int(c)) for a, b, c in dates],
    )


def planned_trip_rows(
    store: CentralStore, route: str | None = None
) -> list[tuple[str, str, str, int, int]]:
    """(trip_id, route_id, service_id, first departure_s, stops) of every trip with stop
    times (of one route), by trip id."""
    where, params = ("WHERE t.route_id = ?", [route]) if route is not None else ("", [])
    sql = (
        "SELECT t.trip_id, t.route_id, t.service_id, s.departure_s, c.n FROM gtfs_trips t"
        " JOIN (SELECT trip_id, MIN(stop_sequence) AS first, COUNT(*) AS n"
        "       FROM gtfs_stop_times GROUP BY trip_id) c ON c.trip_id = t.trip_id"
        " JOIN gtfs_stop_times s ON s.trip_id = t.trip_id AND s.stop_sequence = c.first"
        f" {where} ORDER BY t.trip_id"
    )
    return [
        (str(a), str(b), str(c), int(d), int(e)) for a, b, c, d, e in store.db.execute(sql, params)
    ]


_JOURNEY = {
    "sqlite": """
SELECT bus, t, kind, trip, idx, delay_s FROM (
  SELECT bus, seq, t, kind,
         CASE WHEN json_valid(data) THEN json_extract(data, '$.trip') END AS trip,
         CASE WHEN json_valid(data) AND json_type(data, '$.index') = 'integer'
              THEN json_extract(data, '$.index') END AS idx,
         CASE WHEN json_valid(data) AND json_type(data, '$.delay_s') IN ('integer', 'real')
              THEN json_extract(data, '$.delay_s') END AS delay_s
  FROM events
  WHERE kind IN ('arrived', 'departed', 'passed', 'trip_started', 'trip_finished')
    AND t >= :since AND t < :until
) AS e WHERE trip IS NOT NULL ORDER BY bus, t, seq
""",
    "postgresql": """
SELECT bus, t, kind, trip, idx, delay_s FROM (
  SELECT bus, seq, t, kind, json_field(data, 'trip') AS trip,
         json_number(data, 'index') AS idx, json_number(data, 'delay_s') AS delay_s
  FROM events
  WHERE kind IN ('arrived', 'departed', 'passed', 'trip_started', 'trip_finished')
    AND t >= :since AND t < :until
) AS e WHERE trip IS NOT NULL ORDER BY bus, t, seq
""",
}


def journey_rows(
    store: CentralStore, since: float, until: float
) -> Iterator[tuple[str, float, str, str, int | None, float | None]]:
    """(bus, t, kind, trip, stop index, delay_s) of the journey events with since <= t <
    until, per bus by time; the index is None where the event has none (trip_started) or it
    is no whole number."""
    for bus, t, kind, trip, idx, delay in store.db.execute(
        _JOURNEY[dialect(store)], {"since": since, "until": until}
    ):
        index: int | None = None
        if idx is not None and float(idx) == int(idx) and idx >= 0:
            index = int(idx)
        yield (
            str(bus),
            float(t),
            str(kind),
            str(trip),
            index,
            None if delay is None else float(delay),
        )


def _bucket(store: CentralStore, column: str) -> str:
    """SQL for the bucket number of `column` (unix seconds) with bucket size :bucket."""
    if dialect(store) == "postgresql":
        return f"CAST(FLOOR({column} / :bucket) AS BIGINT)"
    return f"CAST({column} / :bucket AS INTEGER)"


def odometer_buckets(
    store: CentralStore, since: float, until: float, bucket_s: int, max_mps: float
) -> list[tuple[str, int, float, int]]:
    """(bus, bucket, metres, odometer faults) per bus and bucket of `bucket_s` seconds: the
    sum of the forward steps of the odometer between the bus's consecutive samples (in their
    sequence) that have one, each counted in the bucket of its later sample. A step back (an
    odometer reset or swapped) or a step forward faster than `max_mps` since the last sample
    (a jump) counts no metres: it is a fault, and the next step counts from the new value."""
    sql = f"""
SELECT bus, {_bucket(store, "t")} AS b,
       SUM(CASE WHEN d >= 0 AND d <= :max_mps * (t - pt) + :slack THEN d ELSE 0 END),
       SUM(CASE WHEN d < 0 OR d > :max_mps * (t - pt) + :slack THEN 1 ELSE 0 END)
FROM (
  SELECT bus, t, odometer_m - LAG(odometer_m) OVER w AS d, LAG(t) OVER w AS pt
  FROM telemetry WHERE t >= :since AND t < :until AND odometer_m IS NOT NULL
  WINDOW w AS (PARTITION BY bus ORDER BY seq)
) AS steps WHERE d IS NOT NULL GROUP BY bus, b ORDER BY bus, b
"""
    params = {"since": since, "until": until, "bucket": bucket_s, "max_mps": max_mps}
    params["slack"] = 50.0  # metres: the odometer's resolution and a sample's jitter
    rows = store.db.execute(sql, params).fetchall()
    return [(str(a), int(b), float(c or 0.0), int(d or 0)) for a, b, c, d in rows]


def running_buckets(
    store: CentralStore, since: float, until: float, bucket_s: int, max_gap_s: float
) -> list[tuple[str, int, float]]:
    """(bus, bucket, seconds) per bus and bucket: the time between the bus's consecutive
    samples when the earlier had the engine running (rpm > 0) or the bus moving (speed_kmh or
    the GPS speed above 1 km/h), up to `max_gap_s` per gap (a link outage is no operating
    time), each counted in the bucket of its later sample."""
    sql = f"""
SELECT bus, {_bucket(store, "t")} AS b,
       SUM(CASE WHEN t - pt <= :max_gap THEN t - pt ELSE :max_gap END)
FROM (
  SELECT bus, t, LAG(t) OVER w AS pt,
         CASE WHEN LAG(rpm) OVER w > 0 OR LAG(speed_kmh) OVER w > 1
              OR LAG(speed) OVER w > 0.28 THEN 1 ELSE 0 END AS running
  FROM telemetry WHERE t >= :since AND t < :until
  WINDOW w AS (PARTITION BY bus ORDER BY seq)
) AS steps WHERE pt IS NOT NULL AND running = 1 AND t >= pt GROUP BY bus, b ORDER BY bus, b
"""
    params = {"since": since, "until": until, "bucket": bucket_s, "max_gap": max_gap_s}
    rows = store.db.execute(sql, params).fetchall()
    return [(str(a), int(b), float(c or 0.0)) for a, b, c in rows]


_DEPARTURES = {
    "sqlite": """
SELECT route, stop, b, COUNT(*), SUM(CASE WHEN delay_s BETWEEN :early AND :late THEN 1 ELSE 0 END),
       SUM(delay_s)
FROM (
  SELECT CAST(t / :bucket AS INTEGER) AS b,
         CASE WHEN json_valid(data) THEN json_extract(data, '$.route') END AS route,
         CASE WHEN json_valid(data) THEN json_extract(data, '$.stop') END AS stop,
         CASE WHEN json_valid(data) AND json_type(data, '$.delay_s') IN ('integer', 'real')
              THEN json_extract(data, '$.delay_s') END AS delay_s
  FROM events WHERE kind = 'departed' AND t >= :since AND t < :until
) AS e WHERE delay_s IS NOT NULL GROUP BY route, stop, b
""",
    "postgresql": """
SELECT route, stop, b, COUNT(*), SUM(CASE WHEN delay_s BETWEEN :early AND :late THEN 1 ELSE 0 END),
       SUM(delay_s)
FROM (
  SELECT CAST(FLOOR(t / :bucket) AS BIGINT) AS b, json_field(data, 'route') AS route,
         json_field(data, 'stop') AS stop, json_number(data, 'delay_s') AS delay_s
  FROM events WHERE kind = 'departed' AND t >= :since AND t < :until
) AS e WHERE delay_s IS NOT NULL GROUP BY route, stop, b
""",
}


def departure_buckets(
    store: CentralStore,
    since: float,
    until: float,
    bucket_s: int,
    on_time: tuple[float, float],
) -> list[tuple[Any, Any, int, int, int, float]]:
    """(route, stop, bucket, departures, on time, summed delay_s) of the `departed` events
    with a numeric delay, since <= t < until, per route, stop and bucket."""
    params = {
        "since": since,
        "until": until,
        "bucket": bucket_s,
        "early": on_time[0],
        "late": on_time[1],
    }
    rows = store.db.execute(_DEPARTURES[dialect(store)], params).fetchall()
    return [(a, b, int(c), int(d), int(e), float(f)) for a, b, c, d, e, f in rows]


def positions(
    store: CentralStore, bus: str, since: float, until: float, limit: int
) -> list[tuple[float, float, float]]:
    """(t, lat, lon) of the bus's positions with since <= t < until, oldest first; the first
    `limit` only."""
    sql = (
        "SELECT t, lat, lon FROM telemetry WHERE bus = ? AND t >= ? AND t < ?"
        " AND lat IS NOT NULL AND lon IS NOT NULL ORDER BY t, seq LIMIT ?"
    )
    rows = store.db.execute(sql, [bus, since, until, limit]).fetchall()
    return [(float(t), float(lat), float(lon)) for t, lat, lon in rows]
