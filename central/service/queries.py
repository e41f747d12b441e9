"""What dashboards read through central (central/dispatch.py): bus detail, lists, reports.

Dashboards have no database: they ask central over MQTT, and these functions answer from its
store with plain rows (`dict[str, Scalar]`). Everything is bounded (a limit, a time window):
an answer is one MQTT message and must stay well under `codec.MAX_PAYLOAD`.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import Any

from central.media import MediaLibrary
from central.playlists import list_playlists
from central.reports import plays_report
from central.store import gtfs as gtfs_db
from central.store.db import CentralStore
from protocols import codec
from protocols.ads.playlist import zone
from protocols.errors import CodecError
from protocols.schemas import DesiredState, ReportedState, Scalar

__all__ = ["Answer", "Row", "bus_detail", "listing", "report"]

Row = dict[str, Scalar]
Answer = tuple[dict[str, Scalar], dict[str, list[Row]]]  # (result, tables)

VEHICLE = (
    "t, lat, lon, speed, hdop, sats, estimated, speed_kmh, rpm, doors_open, coolant_c, fuel_pct,"
    " odometer_m"
)
MAX_SHAPE_POINTS = 120  # per shape on the map: a terminal cell is far coarser than that
ON_TIME = (-60, 300)  # seconds early .. late that count as on time (a common transit rule)


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _rows(cursor: Any) -> list[Row]:
    names = [d[0] for d in cursor.description]
    return [{n: _scalar(v) for n, v in zip(names, r, strict=True)} for r in cursor.fetchall()]


def bus_detail(store: CentralStore, bus: str, now: float | None = None) -> Answer:
    """Everything the detail screen shows of one bus."""
    now = time.time() if now is None else now
    db = store.db
    result: dict[str, Scalar] = {"bus": bus}
    desired = store.desired(bus)
    messages: list[Row] = []
    if desired is not None:
        try:
            doc = codec.decode(DesiredState, desired[1])
        except CodecError:
            doc = None
        if doc is not None:
            result["desired_version"] = doc.version
            a = doc.assignment
            result.update(
                trip_id=a.trip_id if a else None,
                block_id=a.block_id if a else None,
                route_id=a.route_id if a else None,
                playlist=doc.playlist,
            )
            messages = [
                {"id": m.id, "text": m.text_de, "priority": m.priority, "valid_to": m.valid_to}
                for m in doc.messages
            ]
    row = db.execute("SELECT body FROM reported WHERE bus = ?", [bus]).fetchone()
    if row is not None:
        try:
            rep = codec.decode(ReportedState, bytes(row[0]))
        except CodecError:
            rep = None
        if rep is not None:
            result["reported_version"] = rep.version
            result["reported_playlist"] = rep.playlist
            if rep.error:
                result["reported_error"] = rep.error
            for name, value in sorted(rep.counters.items()):
                result[f"counter.{name}"] = value
            if rep.journey is not None:
                j = rep.journey
                result.update(
                    journey_trip=j.trip_id, journey_stop=j.stop_id, journey_delay_s=j.delay_s
                )
    vehicle = db.execute(
        f"SELECT {VEHICLE} FROM telemetry WHERE bus = ? ORDER BY seq DESC LIMIT 1",
        [bus],
    )
    latest: list[Row] = _rows(vehicle) or [{}]
    for name, scalar in latest[0].items():
        result[f"vehicle.{name}"] = scalar
    events = _rows(
        db.execute(
            "SELECT t, kind, severity, data, backfill FROM events WHERE bus = ?"
            " ORDER BY seq DESC LIMIT 30",
            [bus],
        )
    )
    commands = _rows(
        db.execute(
            "SELECT id, name, args, sent, status, reason, answered FROM commands WHERE bus = ?"
            " ORDER BY sent DESC LIMIT 20",
            [bus],
        )
    )
    alarms = _rows(
        db.execute(
            "SELECT id, kind, severity, state, raised_t FROM alarms WHERE bus = ?"
            " ORDER BY raised_t DESC LIMIT 20",
            [bus],
        )
    )
    result["now"] = now
    return result, {"events": events, "commands": commands, "alarms": alarms, "messages": messages}


def _decimate(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def _shapes(store: CentralStore) -> list[Row]:
    """One shape per route and direction (the one most trips use), as "lat,lon;..." text."""
    db = store.db
    chosen = db.execute(
        "SELECT route_id, direction_id, shape_id, COUNT(*) AS n FROM gtfs_trips"
        " WHERE shape_id IS NOT NULL GROUP BY route_id, direction_id, shape_id"
        " ORDER BY route_id, direction_id, n DESC"
    ).fetchall()
    seen: set[tuple[str, Any]] = set()
    out: list[Row] = []
    for route, direction, shape, _ in chosen:
        if (route, direction) in seen:
            continue
        seen.add((route, direction))
        pts = db.execute(
            "SELECT lat, lon FROM gtfs_shapes WHERE shape_id = ? ORDER BY seq", [shape]
        ).fetchall()
        kept = _decimate([(p[0], p[1]) for p in pts], MAX_SHAPE_POINTS)
        text = ";".join(f"{lat:.5f},{lon:.5f}" for lat, lon in kept)
        out.append({"route": route, "shape": shape, "points": text})
    return out


def listing(store: CentralStore, what: str, args: dict[str, Scalar], media_dir: str) -> Answer:
    """Lists for the dashboard's pickers and map: routes, trips, blocks, stops, shapes,
    playlists, media, messages."""
    db = store.db
    route = args.get("route")
    if what == "routes":
        sql = "SELECT route_id, short_name, long_name, color FROM gtfs_routes ORDER BY short_name"
        return {}, {what: _rows(db.execute(sql))}
    if what == "trips":
        where, params = ("WHERE route_id = ?", [route]) if isinstance(route, str) else ("", [])
        sql = (
            "SELECT trip_id, route_id, headsign, direction_id, block_id,"
            " (SELECT departure_s FROM gtfs_stop_times s WHERE s.trip_id = t.trip_id"
            " ORDER BY stop_sequence LIMIT 1) AS start_s"
            f" FROM gtfs_trips t {where} ORDER BY start_s, trip_id LIMIT 500"
        )
        return {}, {what: _rows(db.execute(sql, params))}
    if what == "blocks":
        sql = (
            "SELECT block_id, COUNT(*) AS trips, GROUP_CONCAT(DISTINCT route_id) AS routes"
            " FROM gtfs_trips WHERE block_id IS NOT NULL GROUP BY block_id"
            " ORDER BY block_id LIMIT 1000"
        )
        return {}, {what: _rows(db.execute(sql))}
    if what == "stops":
        sql = "SELECT stop_id, name, lat, lon FROM gtfs_stops WHERE lat IS NOT NULL LIMIT 5000"
        return {}, {what: _rows(db.execute(sql))}
    if what == "shapes":
        return {}, {what: _shapes(store)}
    if what == "playlists":
        rows: list[Row] = [
            {
                "id": p.id,
                "revision": p.revision,
                "items": len(p.items),
                "media": ",".join(i.name or i.media[:16] for i in p.items),
                "seconds": p.items[0].duration_s if p.items else None,
            }
            for p in list_playlists(store)
        ]
        return {}, {what: rows}
    if what == "media":
        library = MediaLibrary(store, media_dir)
        rows = [
            {"sha256": m.sha256, "name": m.name, "kind": m.kind, "mime": m.mime, "size": m.size}
            for m in library.list()
        ]
        return {}, {what: rows[:1000]}
    if what == "messages":
        sql = (
            "SELECT id, created, text_de, text_en, priority, targets, valid_from, valid_to,"
            " status FROM messages ORDER BY created DESC LIMIT 200"
        )
        return {}, {what: _rows(db.execute(sql))}
    raise ValueError(f"unknown list {what!r}")


def _days(args: dict[str, Scalar]) -> int:
    days = args.get("days", 1)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 31:
        raise ValueError("days is 1 to 31")
    return days


def report(store: CentralStore, what: str, args: dict[str, Scalar], now: float) -> Answer:
    """Reports: proof of play, punctuality per route, the passenger feedback inbox."""
    days = _days(args)
    since = now - days * 86400.0
    db = store.db
    if what == "feedback":
        rows = _rows(
            db.execute(
                "SELECT t, bus, json_extract(data, '$.category') AS category,"
                " json_extract(data, '$.text') AS text FROM events"
                " WHERE kind = 'passenger_feedback' AND t >= ? ORDER BY t DESC LIMIT 300",
                [since],
            )
        )
        return {"days": days}, {what: rows}
    if what == "punctuality":
        delays: dict[str, list[float]] = {}
        for route, delay in db.execute(
            "SELECT json_extract(data, '$.route'), json_extract(data, '$.delay_s') FROM events"
            " WHERE kind = 'departed' AND t >= ?",
            [since],
        ):
            if isinstance(delay, int | float):
                delays.setdefault(str(route or "?"), []).append(float(delay))
        out: list[Row] = []
        for route, ds in sorted(delays.items()):
            ds.sort()
            on_time = sum(1 for d in ds if ON_TIME[0] <= d <= ON_TIME[1])
            out.append(
                {
                    "route": route,
                    "departures": len(ds),
                    "on_time_pct": round(100.0 * on_time / len(ds), 1),
                    "mean_delay_s": round(statistics.fmean(ds)),
                    "p90_delay_s": round(ds[min(len(ds) - 1, int(0.9 * len(ds)))]),
                }
            )
        return {"days": days}, {what: out}
    if what == "plays":
        timezone = gtfs_db.timezone(store) or "UTC"
        tz_now = dt.datetime.fromtimestamp(now, zone(timezone)).date()
        first = tz_now - dt.timedelta(days=days - 1)
        rows = [
            {
                "day": r.day,
                "item": r.item,
                "route": r.route,
                "bus": r.bus,
                "plays": r.plays,
                "seconds": round(r.seconds, 1),
            }
            for r in plays_report(store, first, tz_now, timezone)
        ]
        return {"days": days, "timezone": timezone}, {what: rows[:2000]}
    raise ValueError(f"unknown report {what!r}")
