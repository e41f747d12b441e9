"""Operator reports (issue 18): what an operator is paid by and answers for.

- `trips`: per service day and route, the trips the imported GTFS plans (calendar.txt's
  weekly pattern and the dates of calendar_dates.txt) against what the buses' journey events
  show: a trip is *operated* when every one of its stops was served (arrived, departed or
  passed), *partial* when it ran but missed stops or ended early, *missed* when no bus ran
  it; a *late start* (of an operated or partial trip) left its first stop more than
  `late_s` late. An event belongs to the service day whose planned start of its trip is
  nearest, within `MATCH_BEFORE_S` before to `MATCH_AFTER_S` after it.
- `mileage`: per bus and local day, the kilometres from the odometer's forward steps (a reset
  or a step back counts nothing and is counted as a fault, as is a jump faster than a bus
  drives), and the operating hours. The telemetry has no engine-hour counter: operating time
  is the time between samples while the engine runs (rpm > 0) or the bus moves, a gap in the
  samples counting at most `MAX_GAP_S`.
- `punctuality`: departures per route, stop and local hour of day: how many, on time
  (`ON_TIME`, as the dashboard's report), mean delay.
- `plays`: plays and seconds on screen per item (campaign) and route; `feedback`: the
  passengers' feedback of the days.

Days are local days in the feed's timezone. Every function here is pure over the store's
answers (central/store/operator_reports.py); the formats (CSV, JSON lines, a text table) are
`render`'s.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from central.reports import day_bounds, days, plays_report
from central.store import gtfs as gtfs_db
from central.store import operator_reports as op_db
from central.store import queries as query_db
from central.store.db import CentralStore
from protocols.ads.playlist import zone
from protocols.gtfs.calendar import Service, ServiceCalendar

__all__ = [
    "KINDS",
    "MileageRow",
    "TripDayRow",
    "TripRun",
    "feedback_report",
    "mileage_report",
    "plays_campaigns",
    "punctuality_report",
    "render",
    "trip_runs",
    "trips_report",
]

KINDS = ("trips", "mileage", "punctuality", "plays", "feedback")
LATE_START_S = 300.0  # a first departure later than this is a late start
ON_TIME = (-60.0, 300.0)  # as central/service/queries.py's punctuality
MATCH_BEFORE_S = 3 * 3600.0
MATCH_AFTER_S = 8 * 3600.0
MAX_MPS = 40.0  # 144 km/h: an odometer step faster than this is a jump, not driving
MAX_GAP_S = 120.0  # a gap in the telemetry counts this much operating time at most
MAX_FEEDBACK = 10_000

Format = Literal["csv", "json", "table"]
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TripRun:
    """One planned trip on one service day, and what the buses did of it."""

    day: str
    route: str
    trip: str
    status: str  # operated, partial, missed
    late: bool
    start_delay_s: float | None
    stops: int
    stops_served: int
    buses: str  # comma-separated, sorted


@dataclass(frozen=True, slots=True)
class TripDayRow:
    day: str
    route: str
    planned: int
    operated: int
    partial: int
    missed: int
    late_starts: int


@dataclass(frozen=True, slots=True)
class MileageRow:
    day: str
    bus: str
    km: float
    operating_h: float
    odometer_faults: int


@dataclass(slots=True)
class _Run:
    scheduled: float
    served: set[int] = field(default_factory=set)
    first_departure: float | None = None
    started_delay: float | None = None
    buses: set[str] = field(default_factory=set)


def _service_base(day: dt.date, timezone: str) -> float:
    """Unix time of the service day's "noon minus 12 h", from which GTFS counts its times."""
    noon = dt.datetime.combine(day, dt.time(12), zone(timezone))
    return noon.timestamp() - 12 * 3600.0


def _timezone(store: CentralStore) -> str:
    return gtfs_db.timezone(store) or "UTC"


def trip_runs(
    store: CentralStore,
    first: dt.date,
    last: dt.date,
    *,
    route: str | None = None,
    late_s: float = LATE_START_S,
) -> list[TripRun]:
    """Every planned trip of the days `first` to `last` (of `route`), by day and trip."""
    timezone = _timezone(store)
    services, dates = op_db.calendar_rows(store)
    calendar = ServiceCalendar({s[0]: Service(*s) for s in services}, dates)
    by_service: dict[str, list[tuple[str, str, int, int]]] = defaultdict(list)
    for trip, trip_route, service, start_s, stops in op_db.planned_trip_rows(store, route):
        by_service[service].append((trip, trip_route, start_s, stops))
    runs: dict[tuple[str, str], _Run] = {}
    planned: list[tuple[str, str, str, int]] = []  # day, trip, route, stops
    of_trip: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for day in days(first, last):
        base = _service_base(day, timezone)
        for service in sorted(calendar.active(day)):
            for trip, trip_route, start_s, stops in by_service.get(service, []):
                key = (day.isoformat(), trip)
                runs[key] = _Run(base + start_s)
                planned.append((key[0], trip, trip_route, stops))
                of_trip[trip].append((key[0], base + start_s))
    if not runs:
        return []
    since = min(r.scheduled for r in runs.values()) - MATCH_BEFORE_S
    until = max(r.scheduled for r in runs.values()) + MATCH_AFTER_S
    for bus, t, kind, trip, index, delay in op_db.journey_rows(store, since, until):
        instances = of_trip.get(trip)
        if not instances:
            continue
        day_s, scheduled = min(instances, key=lambda i: abs(t - i[1]))
        if not -MATCH_BEFORE_S <= t - scheduled <= MATCH_AFTER_S:
            continue
        run = runs[(day_s, trip)]
        run.buses.add(bus)
        if kind == "trip_started":
            if run.started_delay is None:
                run.started_delay = delay
            continue
        if index is not None:
            run.served.add(index)
        if kind in ("departed", "passed") and index == 0:
            run.first_departure = t if run.first_departure is None else min(run.first_departure, t)
    out: list[TripRun] = []
    for day_s, trip, trip_route, stops in sorted(planned):
        run = runs[(day_s, trip)]
        served = len(run.served & set(range(stops)))
        status = "missed" if not run.buses else "operated" if served == stops else "partial"
        delay = run.started_delay
        if run.first_departure is not None:
            delay = run.first_departure - run.scheduled
        late = status != "missed" and delay is not None and delay > late_s
        buses = ",".join(sorted(run.buses))
        start = None if delay is None else round(delay, 1)
        out.append(TripRun(day_s, trip_route, trip, status, late, start, stops, served, buses))
    return out


def trips_report(
    store: CentralStore,
    first: dt.date,
    last: dt.date,
    *,
    route: str | None = None,
    late_s: float = LATE_START_S,
) -> list[TripDayRow]:
    """Trips planned, operated, partial, missed and late starts per day and route."""
    counts: dict[tuple[str, str], list[int]] = {}
    for run in trip_runs(store, first, last, route=route, late_s=late_s):
        c = counts.setdefault((run.day, run.route), [0, 0, 0, 0, 0])
        c[0] += 1
        c[("operated", "partial", "missed").index(run.status) + 1] += 1
        c[4] += run.late
    return [TripDayRow(day, r, *c) for (day, r), c in sorted(counts.items())]


def _bucket_s(first: dt.date, last: dt.date, timezone: str) -> int:
    """An hour, or a quarter of one where the local days do not begin on whole hours."""
    for day in days(first, last):
        start, end = day_bounds(day, timezone)
        if start % 3600 or end % 3600:
            return 900
    return 3600


def mileage_report(
    store: CentralStore, first: dt.date, last: dt.date, *, bus: str | None = None
) -> list[MileageRow]:
    """Kilometres, operating hours and odometer faults per local day and bus."""
    timezone = _timezone(store)
    tz = zone(timezone)
    since, until = day_bounds(first, timezone)[0], day_bounds(last, timezone)[1]
    size = _bucket_s(first, last, timezone)
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for b, bucket, metres, faults in op_db.odometer_buckets(store, since, until, size, MAX_MPS):
        key = (dt.datetime.fromtimestamp(bucket * size, tz).date().isoformat(), b)
        totals[key][0] += metres
        totals[key][2] += faults
    for b, bucket, seconds in op_db.running_buckets(store, since, until, size, MAX_GAP_S):
        key = (dt.datetime.fromtimestamp(bucket * size, tz).date().isoformat(), b)
        totals[key][1] += seconds
    return [
        MileageRow(day, b, round(m / 1000.0, 3), round(s / 3600.0, 3), int(f))
        for (day, b), (m, s, f) in sorted(totals.items())
        if bus is None or b == bus
    ]


def punctuality_report(
    store: CentralStore, first: dt.date, last: dt.date, *, route: str | None = None
) -> list[Row]:
    """Departures per route, stop and local hour: how many, % on time, mean delay."""
    timezone = _timezone(store)
    tz = zone(timezone)
    since, until = day_bounds(first, timezone)[0], day_bounds(last, timezone)[1]
    size = _bucket_s(first, last, timezone)
    totals: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for r, stop, bucket, n, on_time, delay in op_db.departure_buckets(
        store, since, until, size, ON_TIME
    ):
        r_s, stop_s = ("" if r is None else str(r)), ("" if stop is None else str(stop))
        if route is not None and r_s != route:
            continue
        hour = dt.datetime.fromtimestamp(bucket * size, tz).hour
        t = totals[(r_s, stop_s, hour)]
        t[0], t[1], t[2] = t[0] + n, t[1] + on_time, t[2] + delay
    return [
        {
            "route": r,
            "stop": s,
            "hour": h,
            "departures": int(n),
            "on_time_pct": round(100.0 * ok / n, 1),
            "mean_delay_s": round(d / n, 1),
        }
        for (r, s, h), (n, ok, d) in sorted(totals.items())
    ]


def plays_campaigns(
    store: CentralStore, first: dt.date, last: dt.date, *, route: str | None = None
) -> list[Row]:
    """Plays and seconds on screen per item (campaign) and route, with how many buses."""
    totals: dict[tuple[str, str], list[Any]] = {}
    for p in plays_report(store, first, last, _timezone(store)):
        if route is not None and p.route != route:
            continue
        t = totals.setdefault((p.item, p.route), [0, 0.0, set()])
        t[0] += p.plays
        t[1] += p.seconds
        t[2].add(p.bus)
    return [
        {"item": i, "route": r, "plays": n, "seconds": round(s, 1), "buses": len(b)}
        for (i, r), (n, s, b) in sorted(totals.items())
    ]


def feedback_report(store: CentralStore, first: dt.date, last: dt.date) -> list[Row]:
    """The passengers' feedback of the days, oldest first."""
    timezone = _timezone(store)
    since, until = day_bounds(first, timezone)[0], day_bounds(last, timezone)[1]
    rows = query_db.feedback_rows(store, since, MAX_FEEDBACK)
    return [r for r in reversed(rows) if r["t"] < until]


def report_rows(
    store: CentralStore,
    kind: str,
    first: dt.date,
    last: dt.date,
    *,
    route: str | None = None,
    bus: str | None = None,
) -> list[Row]:
    """The rows of report `kind` (one of `KINDS`) as plain dicts."""
    if kind == "trips":
        return [asdict(r) for r in trips_report(store, first, last, route=route)]
    if kind == "mileage":
        return [asdict(r) for r in mileage_report(store, first, last, bus=bus)]
    if kind == "punctuality":
        return punctuality_report(store, first, last, route=route)
    if kind == "plays":
        return plays_campaigns(store, first, last, route=route)
    if kind == "feedback":
        return feedback_report(store, first, last)
    raise ValueError(f"unknown report {kind!r}: one of {', '.join(KINDS)}")


def columns_of(kind: str) -> tuple[str, ...]:
    """The columns of report `kind`, in order (the header of an empty CSV too)."""
    return {
        "trips": tuple(f.name for f in fields(TripDayRow)),
        "mileage": tuple(f.name for f in fields(MileageRow)),
        "punctuality": ("route", "stop", "hour", "departures", "on_time_pct", "mean_delay_s"),
        "plays": ("item", "route", "plays", "seconds", "buses"),
        "feedback": ("t", "bus", "category", "text"),
    }[kind]


def render(kind: str, rows: Sequence[Row], fmt: Format) -> str:
    """The rows as CSV (a header line first), JSON lines, or an aligned text table."""
    cols = columns_of(kind)
    if fmt == "json":
        return "".join(json.dumps({c: r.get(c) for c in cols}) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows([["" if r.get(c) is None else r.get(c) for c in cols] for r in rows])
        return buf.getvalue()
    return _table(cols, ([_cell(r.get(c)) for c in cols] for r in rows))


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _table(cols: Sequence[str], rows: Iterable[list[str]]) -> str:
    body = list(rows)
    widths = [max([len(c), *(len(r[i]) for r in body)]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return "\n".join(lines) + "\n"
