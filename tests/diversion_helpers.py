"""A diversion on a real Cairns trip, and a simulated bus driving it through `JourneyRuntime`.

The detour is a parallel street 200 m beside a straight 1.2 km section of a route-121 trip;
the stops along that section are skipped and a temporary stop sits on the parallel street.
The bus (`hw_sim.drive.Drive`) drives the detour for real; its fixes (with GPS noise) go to
the runtime one per simulated second, far faster than real time. The diversion's window
opens a little after the trip starts and closes once the bus is well back on its route.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from hw_sim.drive import Drive
from onboard.display import JourneyView
from onboard.display.journey import journey_view
from onboard.journey.diversion import Detour, divert
from onboard.journey.plan import PathIndex, TripPlan, plan_trip
from onboard.journey.runtime import JourneyRuntime, Recordable
from protocols.geo import Polyline, haversine_m, offset_m
from protocols.gtfs.feed import Feed, demo_trips
from protocols.schemas import Assignment, Diversion, JourneyStatus, Position, TempStop

GTFS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"
ROUTE = "121"  # short name; its trip has a straight section for a parallel street
OFFSET_M = 200.0
LENGTH_M = 1200.0
NOTICE_DE = "Baustelle Sheridan Street: Umleitung über die Parallelstraße"
NOTICE_EN = "Roadworks on Sheridan Street: diverted via the parallel street"


def trip_of_route(feed: Feed, short_name: str = ROUTE) -> str:
    for tid in demo_trips(feed, 22):
        if feed.routes[feed.trips[tid].route_id].short_name == short_name:
            return tid
    raise LookupError(short_name)


def service_day(feed: Feed, trip_id: str) -> date:
    assert feed.services is not None
    day = date(2014, 6, 2)
    while feed.trips[trip_id].service_id not in feed.services.active(day):
        day += timedelta(days=1)
    return day


def _between(line: Polyline, lo: float, hi: float) -> list[tuple[float, float]]:
    inner = [p for p, c in zip(line.points, line.cum_m, strict=True) if lo < c < hi]
    (la1, lo1, _), (la2, lo2, _) = line.point_at(lo), line.point_at(hi)
    return [(la1, lo1), *inner, (la2, lo2)]


def make_diversion(
    plan: TripPlan, *, valid_from: float | None = None, valid_to: float | None = None
) -> Diversion:
    """A parallel street beside a straight section of the trip, as dispatch would draw it:
    from where it leaves the route, along the parallel street, to where it rejoins."""
    line = plan.path
    index = PathIndex(line)
    for d_a in itertools.count(0.2 * line.length_m, 100.0):
        d_b = d_a + LENGTH_M
        if d_b > 0.8 * line.length_m:
            break
        a, b = line.point_at(d_a), line.point_at(d_b)
        if haversine_m(a[0], a[1], b[0], b[1]) < 0.95 * LENGTH_M:
            continue  # not straight enough for a parallel street
        north, east = b[0] - a[0], (b[1] - a[1]) * 0.96  # cos(-16.9 deg)
        norm = (north**2 + east**2) ** 0.5
        for side in (1.0, -1.0):
            dn, de = -east / norm * OFFSET_M * side, north / norm * OFFSET_M * side
            shifted = [offset_m(la, lo, dn, de) for la, lo in _between(line, d_a, d_b)]
            if min(min(c.offset_m for c in index.candidates(*p)) for p in shifted) < 150.0:
                continue  # the parallel street would come near another part of the route
            skip = [s.stop_id for s in plan.stops if d_a - 30.0 <= s.dist_m <= d_b + 30.0]
            middle = shifted[len(shifted) // 2]
            return Diversion(
                id="d-test",
                route_id=plan.route_id,
                skip=skip,
                temp_stops=[TempStop(id="d-test-t1", name="Ersatzhalt Parallelstraße",
                                     lat=middle[0], lon=middle[1])],
                path=[(a[0], a[1]), *shifted, (b[0], b[1])],
                valid_from=valid_from,
                valid_to=valid_to,
                notice_de=NOTICE_DE,
                notice_en=NOTICE_EN,
            )  # fmt: skip
    raise LookupError("no straight section for a detour")


@dataclass
class Step:
    t: float
    view: JourneyView | None
    status: JourneyStatus | None
    notice: str | None
    diverted: bool  # the tracker follows the diverted plan
    adherence: str


@dataclass
class Ride:
    plan: TripPlan  # the timetable's plan
    diversion: Diversion
    detour: Detour  # what the bus really drives
    runtime: JourneyRuntime
    events: list[Recordable] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def skipped(self) -> set[str]:
        return {s.stop_id for s in self.detour.skipped}


def ride(feed: Feed, *, seed: int = 7, noise_m: float = 5.0, until_m: float | None = None) -> Ride:
    """Drive the trip with the diversion (see the module docstring); `until_m`: stop there."""
    tid = trip_of_route(feed)
    plan = plan_trip(feed, tid, service_day(feed, tid))
    start = plan.first_departure_t - 60.0
    probe = make_diversion(plan)
    detour = divert(plan, probe)
    assert detour.rejoin_m is not None

    def drive() -> Drive:
        stops = [(s.stop_id, s.dist_m) for s in detour.plan.stops]
        return Drive(detour.plan.path, stops, start_t=start, seed=seed)

    # The window closes once the bus is 400 m past the rejoin point (a dry run says when).
    dry, t = drive(), start
    while dry.distance_m < detour.rejoin_m + 400.0:
        t += 1.0
        dry.step(t)
    diversion = make_diversion(plan, valid_from=start + 30.0, valid_to=t)
    runtime = JourneyRuntime(feed)
    runtime.assign(Assignment(trip_id=tid, route_id=plan.route_id), [diversion], start)
    out = Ride(plan, diversion, detour, runtime)
    rng = random.Random(seed)
    bus, t = drive(), start
    while not bus.finished and (until_m is None or bus.distance_m < until_m):
        t += 1.0
        truth = bus.step(t)
        lat, lon = offset_m(truth.lat, truth.lon, rng.gauss(0, noise_m), rng.gauss(0, noise_m))
        pos = Position(lat=lat, lon=lon, speed=truth.speed_mps, track=truth.heading_deg, hdop=1.0)
        update = runtime.update(t, pos, doors_open=truth.doors_open)
        out.events += update.events
        tracker = runtime.tracker
        assert tracker is not None
        out.steps.append(
            Step(t, journey_view(runtime), runtime.status(), runtime.notice(),
                 tracker.plan.diverted, tracker.state.adherence)
        )  # fmt: skip
    return out
