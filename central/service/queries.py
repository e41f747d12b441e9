"""What dashboards read through central (central/service/dispatch.py): bus detail, lists, reports.

Dashboards have no database: they ask central over MQTT, and these functions answer from its
store with plain rows (`dict[str, Scalar]`). Everything is bounded (a limit, a time window):
an answer is one MQTT message and must stay well under `codec.MAX_PAYLOAD`.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import time
from typing import Any

from central.media import MediaLibrary
from central.playlists import list_playlists
from central.reports import plays_report, refresh_departures
from central.service.health_requests import health_result
from central.store import gtfs as gtfs_db
from central.store import queries as query_db
from central.store.db import CentralStore
from protocols import codec
from protocols.ads.playlist import zone
from protocols.errors import CodecError
from protocols.schemas import DesiredState, ReportedState, Scalar

__all__ = ["Answer", "Row", "bus_detail", "listing", "report"]

Row = dict[str, Scalar]
Answer = tuple[dict[str, Scalar], dict[str, list[Row]]]  # (result, tables)

MAX_SHAPE_POINTS = 120  # per shape on the map: a terminal cell is far coarser than that
MAX_PLAY_ROWS = 2000  # the plays report's rows in one answer: the first days' (the CLI pages)
ON_TIME = (-60, 300)  # seconds early .. late that count as on time (a common transit rule)


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _rows(rows: list[dict[str, Any]]) -> list[Row]:
    return [{n: _scalar(v) for n, v in r.items()} for r in rows]


def _short_data(event: Row, longest: int = 200) -> Row:
    """An event row whose long text values (a `logs` answer's 87 kB) are said by length: the
    screen shows a line of each event, and the reply must stay one MQTT message."""
    data = event.get("data")
    if not isinstance(data, str) or len(data) <= 4 * longest:
        return event
    try:
        value = codec.decode_json(data)
    except CodecError:
        return {**event, "data": data[:longest]}
    if not isinstance(value, dict):
        return {**event, "data": data[:longest]}
    short = {
        k: f"<{len(v)} characters>" if isinstance(v, str) and len(v) > longest else v
        for k, v in value.items()
    }
    return {**event, "data": codec.encode_json(short)}


def bus_detail(store: CentralStore, bus: str, now: float | None = None) -> Answer:
    """Everything the detail screen shows of one bus."""
    now = time.time() if now is None else now
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
    reported = store.reported(bus)
    if reported is not None:
        try:
            rep = codec.decode(ReportedState, reported)
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
    vehicle = query_db.latest_vehicle(store, bus)
    for name, scalar in _rows([vehicle] if vehicle else [{}])[0].items():
        result[f"vehicle.{name}"] = scalar
    events = [_short_data(e) for e in _rows(query_db.bus_events(store, bus, 30))]
    commands = _rows(query_db.bus_commands(store, bus, 20))
    alarms = _rows(query_db.bus_alarms(store, bus, 20))
    result.update(health_result(store, bus))  # its newest health report (issue 16)
    result["now"] = now
    return result, {"events": events, "commands": commands, "alarms": alarms, "messages": messages}


def _decimate(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def _shapes(store: CentralStore) -> list[Row]:
    """One shape per route and direction (the one most trips use), as "lat,lon;..." text."""
    seen: set[tuple[str, Any]] = set()
    out: list[Row] = []
    for route, direction, shape in query_db.shape_choices(store):
        if (route, direction) in seen:
            continue
        seen.add((route, direction))
        kept = _decimate(query_db.shape_points(store, shape), MAX_SHAPE_POINTS)
        text = ";".join(f"{lat:.5f},{lon:.5f}" for lat, lon in kept)
        out.append({"route": route, "shape": shape, "points": text})
    return out


def listing(store: CentralStore, what: str, args: dict[str, Scalar], media_dir: str) -> Answer:
    """Lists for the dashboard's pickers and map: routes, trips, blocks, stops, shapes,
    playlists, media, messages."""
    route = args.get("route")
    if what == "routes":
        return {}, {what: _rows(query_db.route_rows(store))}
    if what == "trips":
        only = route if isinstance(route, str) else None
        return {}, {what: _rows(query_db.trip_rows(store, only, 500))}
    if what == "blocks":
        return {}, {what: _rows(query_db.block_rows(store, 1000))}
    if what == "stops":
        return {}, {what: _rows(query_db.stop_rows(store, 5000))}
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
        return {}, {what: _rows(query_db.message_list(store, 200))}
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
    if what == "feedback":
        rows = _rows(query_db.feedback_rows(store, since, 300))
        return {"days": days}, {what: rows}
    if what == "punctuality":
        refresh_departures(store)
        delays: dict[str, list[float]] = {}
        for route, delay, n in query_db.departure_delays(store, since):
            if isinstance(delay, int | float) and math.isfinite(delay):
                delays.setdefault(str(route or "?"), []).extend([float(delay)] * n)
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
            for r in plays_report(store, first, tz_now, timezone, limit=MAX_PLAY_ROWS)
        ]
        return {"days": days, "timezone": timezone}, {what: rows}
    raise ValueError(f"unknown report {what!r}")
