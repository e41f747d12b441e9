"""An old GTFS feed as today's service, and the trips a demo fleet drives now.

The bundled Cairns feed ran in 2014; a demo bus driving one of its trips today would be hours
off schedule. `map_feed` rewrites the feed so that its service runs today and its clock reads
late morning now, changing as little as can be:

- **the calendar**: every date of calendar.txt and calendar_dates.txt moves by the same whole
  number of weeks, so today falls on a quiet week of the feed (no exception days) with the
  same weekday: a Saturday runs the Saturday service;
- **the clock**: agency.txt's `agency_timezone` becomes a fixed `Etc/GMT±N` zone in which the
  time now is `LOCAL_HOUR` o'clock, when the feed is busy. Stop times stay as they are (every
  one still valid, byte for byte), and since the zone has no daylight saving, a service day's
  origin is plain midnight. Buses, displays and the dashboard see unix times: a display
  shows the real wall-clock time of each call.

`trips_now` then picks, for each bus, a trip on its own route that the mapped schedule has
running now, and where along it the schedule has the bus now, so that a bus starting there
starts on time. Pure: the time is an argument, files are bytes in and bytes out
(`write_feed_today` is the one function that touches the disk).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from protocols.errors import GtfsError
from protocols.gtfs.feed import Feed

__all__ = [
    "LOCAL_HOUR",
    "FeedToday",
    "TripNow",
    "map_feed",
    "scheduled_dist_at",
    "service_day",
    "trips_now",
    "write_feed_today",
    "zone_for",
]

LOCAL_HOUR = 10  # the feed's clock reads 10:xx now: late morning, the network is busy
MIN_AHEAD_M = 80.0  # a stop nearer than this is behind the bus by the time it tracks
_NOON_S = 12 * 3600
_DATE_FORMAT = "%Y%m%d"
_MIN_OFFSET_H, _MAX_OFFSET_H = -12, 14  # the span of the Etc/GMT zones


@dataclass(frozen=True, slots=True)
class FeedToday:
    """A feed mapped onto today (`map_feed`)."""

    files: dict[str, bytes]  # every file of the feed; only agency and calendars changed
    timezone: str  # the feed's clock now: an `Etc/GMT±N` zone
    service_date: dt.date  # today, in that zone
    reference_date: dt.date  # the feed's own day whose service runs today (same weekday)
    shift_days: int  # every calendar date moved by this many days (whole weeks)


@dataclass(frozen=True, slots=True)
class TripNow:
    """A trip running now and where the schedule has its bus now (`trips_now`)."""

    trip_id: str
    route_id: str
    dist_m: float  # scheduled position now, along the trip's path
    length_m: float  # the path's length
    next_stop_m: float = 0.0  # from there to the next stop ahead (`trips_now`)

    @property
    def start_fraction(self) -> float:
        return self.dist_m / self.length_m if self.length_m > 0 else 0.0


# -- the clock -------------------------------------------------------------------------------
def zone_for(now: float, local_hour: int = LOCAL_HOUR) -> tuple[str, int]:
    """The fixed zone (and its offset from UTC in hours) where `now` is `local_hour`:xx.

    Of the two offsets that may fit, the one that keeps the UTC date where possible.
    """
    if not 0 <= local_hour <= 23:
        raise ValueError(f"local_hour must be 0 to 23, not {local_hour}")
    offset = local_hour - dt.datetime.fromtimestamp(now, dt.UTC).hour
    if offset < _MIN_OFFSET_H:
        offset += 24
    elif offset > _MAX_OFFSET_H:
        offset -= 24
    # POSIX signs: Etc/GMT-10 is ten hours ahead of UTC.
    return ("Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"), offset


def service_day(now: float, timezone: str | None) -> tuple[dt.date, float]:
    """Today's date in `timezone` and the unix time its GTFS times count from (noon - 12 h)."""
    zone = ZoneInfo(timezone or "UTC")
    today = dt.datetime.fromtimestamp(now, zone).date()
    noon = dt.datetime(today.year, today.month, today.day, 12, tzinfo=zone)
    return today, noon.timestamp() - _NOON_S


# -- the calendar ----------------------------------------------------------------------------
def _text(files: dict[str, bytes], name: str) -> str | None:
    data = files.get(name)
    if data is None:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GtfsError(f"{name} is not UTF-8: {exc}", file=name) from exc


def _rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    return list(reader.fieldnames or []), list(reader)


def _csv(fields: list[str], rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fields, lineterminator="\r\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _date(text: str, name: str) -> dt.date:
    try:
        return dt.datetime.strptime(text.strip(), _DATE_FORMAT).date()
    except ValueError:
        raise GtfsError(f"not a date (YYYYMMDD): {text!r}", file=name) from None


def _reference_monday(
    calendar: list[dict[str, str]], exceptions: list[dict[str, str]]
) -> dt.date | None:
    """The Monday of the feed's week nearest the middle of its validity with no exception
    day (a holiday); None without calendar dates."""
    bounds = [_date(r["start_date"], "calendar.txt") for r in calendar]
    bounds += [_date(r["end_date"], "calendar.txt") for r in calendar]
    special = {_date(r["date"], "calendar_dates.txt") for r in exceptions}
    bounds += list(special)
    if not bounds:
        return None
    first, last = min(bounds), max(bounds)
    middle = first + (last - first) / 2
    mondays = [middle - dt.timedelta(days=middle.weekday() + 7 * k) for k in range(-60, 61)]
    inside = [m for m in mondays if first <= m and m + dt.timedelta(days=6) <= last]
    inside.sort(key=lambda m: abs((m - middle).days))
    for monday in inside:
        if not any(monday <= d <= monday + dt.timedelta(days=6) for d in special):
            return monday
    return inside[0] if inside else middle - dt.timedelta(days=middle.weekday())


def _shifted(rows: list[dict[str, str]], columns: tuple[str, ...], days: int, name: str) -> None:
    delta = dt.timedelta(days=days)
    for row in rows:
        for column in columns:
            row[column] = (_date(row[column], name) + delta).strftime(_DATE_FORMAT)


def map_feed(files: dict[str, bytes], now: float, *, local_hour: int = LOCAL_HOUR) -> FeedToday:
    """The feed's files with its service on today and its clock at `local_hour`:xx at `now`.

    GtfsError if agency.txt or a calendar file cannot be read.
    """
    timezone, _ = zone_for(now, local_hour)
    today, _ = service_day(now, timezone)
    out = dict(files)

    agency = _text(files, "agency.txt")
    if agency is None:
        raise GtfsError("the feed has no agency.txt", file="agency.txt")
    fields, agencies = _rows(agency)
    if "agency_timezone" not in fields:
        raise GtfsError("agency.txt has no agency_timezone column", file="agency.txt")
    for row in agencies:
        row["agency_timezone"] = timezone
    out["agency.txt"] = _csv(fields, agencies)

    calendar_text = _text(files, "calendar.txt")
    dates_text = _text(files, "calendar_dates.txt")
    cal_fields, calendar = _rows(calendar_text) if calendar_text is not None else ([], [])
    date_fields, exceptions = _rows(dates_text) if dates_text is not None else ([], [])
    monday = _reference_monday(calendar, exceptions)
    shift = 0 if monday is None else (today - monday).days // 7 * 7
    if calendar_text is not None:
        _shifted(calendar, ("start_date", "end_date"), shift, "calendar.txt")
        out["calendar.txt"] = _csv(cal_fields, calendar)
    if dates_text is not None:
        _shifted(exceptions, ("date",), shift, "calendar_dates.txt")
        out["calendar_dates.txt"] = _csv(date_fields, exceptions)
    return FeedToday(out, timezone, today, today - dt.timedelta(days=shift), shift)


def write_feed_today(
    source: Path, target: Path, now: float, *, local_hour: int = LOCAL_HOUR
) -> FeedToday:
    """`map_feed` from a GTFS zip into a new zip (the files at its top level)."""
    try:
        with zipfile.ZipFile(source) as zf:
            files = {
                Path(i.filename).name: zf.read(i)
                for i in zf.infolist()
                if not i.is_dir() and i.filename.endswith(".txt")
            }
    except (OSError, zipfile.BadZipFile) as exc:
        raise GtfsError(f"cannot read GTFS feed {source}: {exc}") from exc
    today = map_feed(files, now, local_hour=local_hour)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(today.files.items()):
            zf.writestr(name, data)
    return today


# -- the trips -------------------------------------------------------------------------------
def scheduled_dist_at(feed: Feed, trip_id: str, rel_s: float) -> float:
    """Where the schedule has the trip's bus `rel_s` seconds after its service day's origin:
    at a stop while it dwells, linear in distance between two stops (as the agent's plan)."""
    _, stops = feed.trip_path(trip_id)
    calls = feed.stop_times(trip_id)
    for (a, (_, da)), (b, (_, db)) in itertools.pairwise(zip(calls, stops, strict=True)):
        if rel_s <= a.departure_s:
            return da
        if rel_s < b.arrival_s:
            return da + (rel_s - a.departure_s) / (b.arrival_s - a.departure_s) * (db - da)
    return stops[-1][1]


def trips_now(
    feed: Feed,
    now: float,
    n: int,
    *,
    min_left_s: float = 600.0,
    min_length_m: float = 2_000.0,
    max_offset_m: float = 80.0,
    min_ahead_m: float = MIN_AHEAD_M,
) -> list[TripNow]:
    """Up to `n` trips running at `now` (today's service day in the feed's zone), each on its
    own route while routes last, then further trips of the same routes.

    A trip qualifies when its service runs today, it left its first stop and has at least
    `min_left_s` to its last, its path is `min_length_m` long and every stop lies within
    `max_offset_m` of it (good to drive). The nearer its next stop (at least `min_ahead_m`
    ahead of where the schedule has the bus), the sooner a short demo sees the bus serve
    one: per route that trip comes first, and routes go by their first trip's distance.
    Deterministic for a feed and a time.
    """
    today, origin = service_day(now, feed.timezone)
    rel = now - origin
    active = None if feed.services is None else feed.services.active(today)
    per_route: dict[str, list[TripNow]] = {}
    for tid in sorted(feed.trips):
        trip = feed.trips[tid]
        if active is not None and trip.service_id not in active:
            continue
        calls = feed.stop_times(tid)
        if len(calls) < 3 or not calls[0].departure_s <= rel <= calls[-1].arrival_s - min_left_s:
            continue
        line, stops = feed.trip_path(tid)
        if line.length_m < min_length_m or max(feed.stop_offsets(tid)) > max_offset_m:
            continue
        dist = scheduled_dist_at(feed, tid, rel)
        ahead = [d - dist for _, d in stops if d - dist >= min_ahead_m]
        next_stop = ahead[0] if ahead else line.length_m
        per_route.setdefault(trip.route_id, []).append(
            TripNow(tid, trip.route_id, dist, line.length_m, next_stop)
        )
    queues = sorted(
        (sorted(found, key=lambda t: (t.next_stop_m, t.trip_id)) for found in per_route.values()),
        key=lambda q: (q[0].next_stop_m, q[0].route_id),
    )
    chosen: list[TripNow] = []
    for round_ in itertools.count():
        taken = [q[round_] for q in queues if round_ < len(q)]
        if not taken or len(chosen) >= n:
            break
        chosen += taken
    return chosen[:n]
