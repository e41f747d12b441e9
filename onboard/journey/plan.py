"""What a bus is meant to drive: trip plans built from a GTFS feed, for `onboard.journey`.

A `TripPlan` is one trip on one service day: the path (a `Polyline`), its stops with their
distance along the path and their scheduled times, and the service day's origin so that a
schedule time becomes a unix time. Plans are values: a diversion is a new plan for the same
trip (`divert_plan`), which the tracker takes in with `JourneyTracker.replace_plan`.

Assignments come in three kinds (`protocols.schemas.Assignment`): a trip, a block (the feed's
trips with that block_id on the service day, ordered by first departure) or a route, where
`match_trip` picks the trip of that route that runs now nearest to where the bus is.

Which trips run on a day comes from the feed's calendar (`Feed.services`, or a `calendar`
argument); a feed without calendar files runs every trip every day.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocols.errors import GtfsError
from protocols.geo import EARTH_RADIUS_M, Polyline, match_along
from protocols.gtfs.feed import Feed, Trip

__all__ = [
    "Calendar",
    "Candidate",
    "PathIndex",
    "PlannedStop",
    "TripMatch",
    "TripPlan",
    "block_plans",
    "divert_plan",
    "heading_penalty",
    "match_trip",
    "plan_trip",
    "plans_for_assignment",
    "service_day_origin",
]

_NOON_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class PlannedStop:
    """One call of the plan. `sequence` is the feed's stop_sequence: it survives diversions."""

    index: int
    sequence: int
    stop_id: str
    name: str
    lat: float
    lon: float
    dist_m: float
    arrival_s: int  # seconds from the service day's origin
    departure_s: int


@dataclass(frozen=True, slots=True, eq=False)
class TripPlan:
    """A trip on one service day, ready to track."""

    trip_id: str
    route_id: str
    route_short_name: str
    headsign: str
    block_id: str | None
    service_date: date
    day_origin_t: float  # unix time of the service day's origin: noon minus 12 h, local time
    path: Polyline
    stops: tuple[PlannedStop, ...]
    diverted: bool = False
    _dists: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.stops:
            raise ValueError(f"trip {self.trip_id} has no stops")
        object.__setattr__(self, "_dists", tuple(s.dist_m for s in self.stops))

    def arrival_t(self, index: int) -> float:
        """Scheduled arrival at stop `index`, unix seconds."""
        return self.day_origin_t + self.stops[index].arrival_s

    def departure_t(self, index: int) -> float:
        """Scheduled departure from stop `index`, unix seconds."""
        return self.day_origin_t + self.stops[index].departure_s

    @property
    def first_departure_t(self) -> float:
        return self.departure_t(0)

    @property
    def last_arrival_t(self) -> float:
        return self.arrival_t(len(self.stops) - 1)

    def scheduled_t_at(self, dist_m: float) -> float:
        """When the schedule has the bus at `dist_m`: linear in distance between two stops."""
        i = bisect_right(self._dists, dist_m) - 1
        if i < 0:
            return self.departure_t(0)
        if i >= len(self.stops) - 1:
            return self.arrival_t(len(self.stops) - 1)
        a, b = self.stops[i], self.stops[i + 1]
        span = b.dist_m - a.dist_m
        f = (dist_m - a.dist_m) / span if span > 0 else 1.0
        return self.day_origin_t + a.departure_s + f * (b.arrival_s - a.departure_s)

    def scheduled_dist_at(self, t: float) -> float:
        """Where the schedule has the bus at unix time `t` (the inverse of `scheduled_t_at`)."""
        rel = t - self.day_origin_t
        for a, b in zip(self.stops, self.stops[1:], strict=False):
            if rel <= a.departure_s:
                return a.dist_m
            if rel < b.arrival_s:
                f = (rel - a.departure_s) / (b.arrival_s - a.departure_s)
                return a.dist_m + f * (b.dist_m - a.dist_m)
        return self.stops[-1].dist_m


def service_day_origin(day: date, timezone: str | None) -> float:
    """Unix time from which a service day's GTFS times count: noon minus 12 h, local time.

    That is local midnight except on daylight-saving days, where GTFS wants it this way.
    """
    tz = _zone(timezone)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz)
    return noon.timestamp() - _NOON_S


def _zone(timezone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GtfsError(f"unknown agency timezone {timezone!r}", file="agency.txt") from exc


def plan_trip(feed: Feed, trip_id: str, service_date: date) -> TripPlan:
    """The plan of one trip of `feed` on `service_date`; KeyError if the trip is unknown."""
    trip = feed.trips[trip_id]
    line, stops = feed.trip_path(trip_id)
    calls = feed.stop_times(trip_id)
    planned = tuple(
        PlannedStop(i, c.sequence, s.stop_id, s.name, s.lat, s.lon, d, c.arrival_s, c.departure_s)
        for i, ((s, d), c) in enumerate(zip(stops, calls, strict=True))
    )
    route = feed.routes[trip.route_id]
    return TripPlan(
        trip_id=trip_id,
        route_id=trip.route_id,
        route_short_name=route.short_name or route.long_name,
        headsign=trip.headsign,
        block_id=trip.block_id,
        service_date=service_date,
        day_origin_t=service_day_origin(service_date, feed.timezone),
        path=line,
        stops=planned,
    )


def divert_plan(
    plan: TripPlan, points: Sequence[tuple[float, float]], *, skip: Collection[str] = ()
) -> TripPlan:
    """The same trip on another path: stops in `skip` (stop ids) are left out, the others are
    placed on the new path in order. Scheduled times stay; delay then shows the detour's cost.
    """
    line = Polyline(points)
    kept = [s for s in plan.stops if s.stop_id not in skip]
    fits = match_along(line, [(s.lat, s.lon) for s in kept])
    stops = tuple(
        PlannedStop(i, s.sequence, s.stop_id, s.name, s.lat, s.lon, d, s.arrival_s, s.departure_s)
        for i, (s, (d, _)) in enumerate(zip(kept, fits, strict=True))
    )
    return TripPlan(
        trip_id=plan.trip_id,
        route_id=plan.route_id,
        route_short_name=plan.route_short_name,
        headsign=plan.headsign,
        block_id=plan.block_id,
        service_date=plan.service_date,
        day_origin_t=plan.day_origin_t,
        path=line,
        stops=stops,
        diverted=True,
    )


# -- geometry for matching ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A point of the path near a position: distance along, offset from it, path heading."""

    dist_m: float
    offset_m: float
    heading_deg: float


class PathIndex:
    """A path in a flat local frame, for cheap projections onto a window of it.

    Projecting a fix on the whole of a 40 km shape costs half a millisecond; a tracker only
    needs the few segments around where the bus was, found by bisection on distance.
    """

    __slots__ = ("_cum", "_heading", "_kx", "_ky", "_lat0", "_lon0", "_xy", "length_m")

    def __init__(self, line: Polyline) -> None:
        self._lat0, self._lon0 = line.points[len(line.points) // 2]
        self._ky = math.pi / 180.0 * EARTH_RADIUS_M
        self._kx = math.cos(math.radians(self._lat0)) * self._ky
        self._xy = [self._to_xy(la, lo) for la, lo in line.points]
        self._cum = line.cum_m
        self.length_m = line.length_m
        self._heading = [
            math.degrees(math.atan2(x2 - x1, y2 - y1)) % 360.0
            for (x1, y1), (x2, y2) in zip(self._xy, self._xy[1:], strict=False)
        ]

    def _to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky

    def candidates(
        self, lat: float, lon: float, lo: float = 0.0, hi: float = math.inf
    ) -> list[Candidate]:
        """Per segment meeting [lo, hi]: the point of it within the window nearest the fix."""
        px, py = self._to_xy(lat, lon)
        cum = self._cum
        lo = max(lo, 0.0)
        hi = min(hi, self.length_m)
        if len(self._xy) < 2 or hi < lo:
            return []
        first = max(0, bisect_right(cum, lo) - 1)
        last = min(len(cum) - 2, bisect_left(cum, hi))
        out: list[Candidate] = []
        for i in range(first, last + 1):
            seg = cum[i + 1] - cum[i]
            if seg <= 1e-6:
                continue  # repeated point: its neighbours' ends cover it
            (x1, y1), (x2, y2) = self._xy[i], self._xy[i + 1]
            dx, dy = x2 - x1, y2 - y1
            f = min(1.0, max(0.0, ((px - x1) * dx + (py - y1) * dy) / (dx * dx + dy * dy)))
            # Along a segment the distance to the fix is convex: if its nearest point lies
            # outside the window, the window's edge is the nearest point inside it.
            d = min(max(cum[i] + f * seg, lo), hi)
            f = min(1.0, max(0.0, (d - cum[i]) / seg))
            off = math.hypot(x1 + f * dx - px, y1 + f * dy - py)
            out.append(Candidate(cum[i] + f * seg, off, self._heading[i]))
        return out

    def local_minima(self, lat: float, lon: float, max_offset_m: float) -> list[Candidate]:
        """Where the path comes nearest the fix, once per pass (a loop passes a place twice)."""
        c = self.candidates(lat, lon)
        return [
            p
            for i, p in enumerate(c)
            if p.offset_m <= max_offset_m
            and (i == 0 or p.offset_m < c[i - 1].offset_m)
            and (i == len(c) - 1 or p.offset_m <= c[i + 1].offset_m)
        ]


# -- service days, blocks, assignments --------------------------------------------------------


class Calendar(Protocol):
    """Which service_ids run on a day (`protocols.gtfs.calendar.ServiceCalendar`)."""

    def active(self, day: date) -> frozenset[str]: ...


def _running(feed: Feed, calendar: Calendar | None, day: date) -> Callable[[Trip], bool]:
    calendar = calendar if calendar is not None else feed.services
    active = None if calendar is None else calendar.active(day)
    return lambda trip: active is None or trip.service_id in active


def _candidate_days(feed: Feed, t: float) -> list[date]:
    # Trips after midnight belong to the previous service day (times beyond 24:00:00).
    today = datetime.fromtimestamp(t, _zone(feed.timezone)).date()
    return [today, today - timedelta(days=1)]


def block_plans(
    feed: Feed, block_id: str, service_date: date, *, calendar: Calendar | None = None
) -> list[TripPlan]:
    """The block's trips running on `service_date`, ordered by first departure."""
    runs = _running(feed, calendar, service_date)
    tids = [tid for tid, trip in feed.trips.items() if trip.block_id == block_id and runs(trip)]
    tids.sort(key=lambda tid: (feed.stop_times(tid)[0].departure_s, tid))
    return [plan_trip(feed, tid, service_date) for tid in tids]


@dataclass(frozen=True, slots=True)
class TripMatch:
    """The trip `match_trip` chose and how well it fits where and when the bus is."""

    trip_id: str
    service_date: date
    dist_m: float
    offset_m: float
    delay_s: float


def match_trip(
    feed: Feed,
    route_id: str,
    lat: float,
    lon: float,
    t: float,
    *,
    track: float | None = None,
    calendar: Calendar | None = None,
    max_offset_m: float = 100.0,
    early_s: float = 600.0,
    late_s: float = 1800.0,
) -> TripMatch | None:
    """The trip of `route_id` the bus at (lat, lon) at unix time `t` is most likely driving.

    A trip fits when its path passes within `max_offset_m` and the schedule has it at that
    place between `early_s` after and `late_s` before `t`. Among fits the least cost wins:
    offset in metres plus one metre per 10 s off schedule, plus up to 40 m when `track`
    disagrees with the path's direction (which tells the two directions of a street apart).
    """
    best: tuple[float, TripMatch] | None = None
    near_cache: dict[tuple[str | None, tuple[str, ...]], list[Candidate]] = {}
    for day in _candidate_days(feed, t):
        origin = service_day_origin(day, feed.timezone)
        runs = _running(feed, calendar, day)
        for tid, trip in feed.trips.items():
            if trip.route_id != route_id or not runs(trip):
                continue
            calls = feed.stop_times(tid)
            if not calls or not (
                origin + calls[0].departure_s - early_s
                <= t
                <= origin + calls[-1].arrival_s + late_s
            ):
                continue
            key = (trip.shape_id, tuple(c.stop_id for c in calls))
            if key not in near_cache:
                near_cache[key] = PathIndex(feed.trip_path(tid)[0]).local_minima(
                    lat, lon, max_offset_m
                )
            plan: TripPlan | None = None
            for cand in near_cache[key]:
                plan = plan or plan_trip(feed, tid, day)
                delay = t - plan.scheduled_t_at(cand.dist_m)
                if not -early_s <= delay <= late_s:
                    continue
                cost = cand.offset_m + abs(delay) / 10.0 + heading_penalty(track, cand.heading_deg)
                if best is None or cost < best[0]:
                    best = (cost, TripMatch(tid, day, cand.dist_m, cand.offset_m, delay))
    return None if best is None else best[1]


def heading_penalty(track: float | None, heading: float, weight_m: float = 40.0) -> float:
    """0 when the bus moves along the path, `weight_m` when against it, None track: 0."""
    if track is None:
        return 0.0
    return weight_m * (1.0 - math.cos(math.radians(track - heading))) / 2.0


def plans_for_assignment(
    feed: Feed,
    *,
    trip_id: str | None = None,
    block_id: str | None = None,
    route_id: str | None = None,
    t: float,
    position: tuple[float, float] | None = None,
    track: float | None = None,
    calendar: Calendar | None = None,
) -> list[TripPlan]:
    """The plans to track for an assignment at time `t` (empty when nothing fits yet).

    A block gives its trips from `trip_id` on if one is named, else those not finished an
    hour ago; a trip gives itself on the service day where it runs nearest to `t`; a route
    needs `position` for `match_trip` (call again with a fresh fix when this returns []).
    """
    if block_id is not None:
        for day in _candidate_days(feed, t):
            plans = block_plans(feed, block_id, day, calendar=calendar)
            ids = [p.trip_id for p in plans]
            if trip_id in ids:
                return plans[ids.index(trip_id) :]
            plans = [p for p in plans if p.last_arrival_t > t - 3600.0]
            if plans:
                return plans
        return []
    if trip_id is not None:
        if trip_id not in feed.trips:
            return []
        trip = feed.trips[trip_id]
        days = [d for d in _candidate_days(feed, t) if _running(feed, calendar, d)(trip)]
        days = days or _candidate_days(feed, t)
        plans = [plan_trip(feed, trip_id, d) for d in days]
        return [min(plans, key=lambda p: _distance_in_time(p, t))]
    if route_id is not None and position is not None:
        m = match_trip(feed, route_id, *position, t, track=track, calendar=calendar)
        return [] if m is None else [plan_trip(feed, m.trip_id, m.service_date)]
    return []


def _distance_in_time(plan: TripPlan, t: float) -> float:
    if t < plan.first_departure_t:
        return plan.first_departure_t - t
    return max(0.0, t - plan.last_arrival_t)
