"""Journey tracking on real Cairns trips, driven by the simulator with realistic GPS noise.

Each trip is driven by `hw_sim.drive.Drive` (which serves most stops and drives past some,
and halts at red lights), its NMEA comes from `GpsSimulator` (a wandering error of 4-10 m)
and goes through `NmeaDecoder` into the tracker, faster than real time: the simulated clock
is stepped one second per epoch. The doors come from the truth, as the CAN bus gives them.

"The stop sequence matches": every stop of the trip gets exactly one outcome from the
tracker, *arrived* or *passed*, in stop order, and that outcome is *arrived* exactly when the
simulated bus dwelt there (`VehicleTruth.stop_index` was that stop at some instant). The
share of stops whose outcome matches, over all trips, must be at least 99 %.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest

from hw_sim.drive import Drive
from hw_sim.gps_sim import GpsSimulator
from hw_sim.truth import VehicleTruth
from onboard.journey.plan import (
    PathIndex,
    TripPlan,
    divert_plan,
    match_trip,
    plan_trip,
)
from onboard.journey.tracker import JourneyEvent, JourneyTracker
from protocols.geo import Polyline, haversine_m, offset_m
from protocols.gtfs.feed import Feed, demo_trips, read_feed
from protocols.nmea.decoder import Fix, NmeaDecoder

GTFS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"
# Varied routes: a loop (112, driven as a block of two trips), short suburban ones, a long one.
ROUTES = ("112", "130", "121", "141", "113", "110N")
NOISE_M = (5.0, 4.0, 6.0, 8.0, 10.0, 7.0)
DETOUR_ROUTE = "121"
DETOUR_OFFSET_M = 200.0
DETOUR_LENGTH_M = 1200.0


@dataclass
class Run:
    """What one tracker saw and what really happened, for one or more trips in a row."""

    plans: list[TripPlan]
    events: list[JourneyEvent] = field(default_factory=list)
    no_door_events: list[JourneyEvent] = field(default_factory=list)
    served: dict[tuple[str, int], float] = field(default_factory=dict)  # -> halt start
    moved_off: dict[tuple[str, int], float] = field(default_factory=dict)  # -> first motion
    delay_errors: list[float] = field(default_factory=list)
    leave_t: float | None = None  # detours: when the bus left the planned path
    back_t: float | None = None  # and when it was back on it


@pytest.fixture(scope="module")
def feed() -> Feed:
    return read_feed(GTFS)


def _service_day(feed: Feed, trip_id: str) -> date:
    assert feed.services is not None
    day = date(2014, 6, 2)
    while feed.trips[trip_id].service_id not in feed.services.active(day):
        day += timedelta(days=1)
    return day


def _trip_of_route(feed: Feed, short_name: str) -> str:
    for tid in demo_trips(feed, 22):
        if feed.routes[feed.trips[tid].route_id].short_name == short_name:
            return tid
    raise LookupError(short_name)


def _next_trip_same_pattern(feed: Feed, trip_id: str) -> str:
    trip = feed.trips[trip_id]
    first = feed.stop_times(trip_id)[0].departure_s
    later = [
        t
        for t in feed.trips.values()
        if t.route_id == trip.route_id
        and t.service_id == trip.service_id
        and t.shape_id == trip.shape_id
        and feed.stop_times(t.trip_id)[0].departure_s > first
    ]
    return min(later, key=lambda t: feed.stop_times(t.trip_id)[0].departure_s).trip_id


def _fixes(sim: GpsSimulator, decoder: NmeaDecoder, t: float) -> Iterator[tuple[VehicleTruth, Fix]]:
    truth, sentences = sim.epoch(t)
    for s in sentences:
        decoder.receive_data(s)
    while (fix := decoder.next_fix()) is not None:
        yield truth, fix


def _drive(
    run: Run,
    trackers: tuple[JourneyTracker, JourneyTracker],
    plan: TripPlan,
    drive: Drive,
    stop_map: list[int],
    *,
    seed: int,
    noise_m: float,
    until: float | None = None,
    detour: tuple[float, float] | None = None,
) -> float:
    """Drive to the end (and on to `until`, standing): feed both trackers, note the truth."""
    sim = GpsSimulator(drive, seed=seed, noise_m=noise_m)
    decoder = NmeaDecoder()
    with_doors, no_doors = trackers
    t = drive.t
    halt_at: float | None = None
    dwelling: int | None = None
    while not drive.finished or (until is not None and t < until):
        t += 1.0
        for truth, fix in _fixes(sim, decoder, t):
            assert fix.time is not None
            ft = fix.time.timestamp()
            run.events += with_doors.update(
                ft, fix.lat, fix.lon, speed=fix.speed, track=fix.track, hdop=fix.hdop,
                doors_open=truth.doors_open,
            )  # fmt: skip
            run.no_door_events += no_doors.update(
                ft, fix.lat, fix.lon, speed=fix.speed, track=fix.track, hdop=fix.hdop
            )
            if truth.speed_mps == 0.0 and halt_at is None:
                halt_at = truth.t
            if truth.stop_index is not None:
                dwelling = stop_map[truth.stop_index]
                run.served.setdefault((plan.trip_id, dwelling), halt_at or truth.t)
            if truth.speed_mps > 0.0:
                if dwelling is not None:
                    run.moved_off[(plan.trip_id, dwelling)] = truth.t
                halt_at, dwelling = None, None
            if detour is not None:
                if run.leave_t is None and drive.distance_m > detour[0] + 1.0:
                    run.leave_t = truth.t
                if run.back_t is None and drive.distance_m >= detour[1]:
                    run.back_t = truth.t
            state = with_doors.state
            if (
                detour is None
                and state.trip_id == plan.trip_id
                and state.dist_m is not None
                and state.delay_s is not None
                and not state.at_stop
                and truth.speed_mps > 3.0
            ):
                truth_delay = truth.t - plan.scheduled_t_at(drive.distance_m)
                run.delay_errors.append(state.delay_s - truth_delay)
    return t


def _fresh_trackers(plans: list[TripPlan], now: float) -> tuple[JourneyTracker, JourneyTracker]:
    return JourneyTracker(plans, now=now), JourneyTracker(plans, now=now)


@pytest.fixture(scope="module")
def runs(feed: Feed) -> list[Run]:
    out: list[Run] = []
    for seed, (route, noise) in enumerate(zip(ROUTES, NOISE_M, strict=True)):
        tid = _trip_of_route(feed, route)
        day = _service_day(feed, tid)
        plans = [plan_trip(feed, tid, day)]
        if route == "112":  # the loop: drive the next trip of its pattern too, as one block
            plans.append(plan_trip(feed, _next_trip_same_pattern(feed, tid), day))
        start = plans[0].first_departure_t - 60.0
        run = Run(plans)
        trackers = _fresh_trackers(plans, start)
        t = start
        for i, plan in enumerate(plans):
            nxt = plans[i + 1].first_departure_t - 60.0 if i + 1 < len(plans) else None
            drive = Drive(
                plan.path,
                [(s.stop_id, s.dist_m) for s in plan.stops],
                start_t=max(t, plan.first_departure_t - 60.0),
                seed=seed * 10 + i,
            )
            mapping = list(range(len(plan.stops)))
            t = _drive(run, trackers, plan, drive, mapping, seed=seed, noise_m=noise, until=nxt)
        out.append(run)
    return out


def _outcomes(events: list[JourneyEvent], trip_id: str) -> list[tuple[int, str]]:
    return [
        (e.stop_index, e.kind)
        for e in events
        if e.trip_id == trip_id and e.kind in ("arrived", "passed") and e.stop_index is not None
    ]


def _matches(run: Run, events: list[JourneyEvent]) -> tuple[int, int]:
    """(stops whose outcome matches the truth, stops) over the run's trips."""
    good = total = 0
    for plan in run.plans:
        got = _outcomes(events, plan.trip_id)
        indices = [i for i, _ in got]
        assert indices == sorted(indices), f"{plan.trip_id}: outcomes out of stop order"
        by_stop: dict[int, list[str]] = {}
        for i, kind in got:
            by_stop.setdefault(i, []).append(kind)
        for stop in plan.stops:
            want = "arrived" if (plan.trip_id, stop.index) in run.served else "passed"
            good += by_stop.get(stop.index) == [want]
            total += 1
    return good, total


def test_the_detected_stop_sequence_matches_the_truth_for_99_percent_of_stops(
    runs: list[Run],
) -> None:
    good, total = map(sum, zip(*(_matches(r, r.events) for r in runs), strict=True))
    skipped = sum(len(p.stops) for r in runs for p in r.plans) - sum(len(r.served) for r in runs)
    assert total > 150 and skipped > 5, "the sample must include stops the bus drove past"
    assert good / total >= 0.99, f"{total - good} of {total} stops wrong"


def test_without_a_door_signal_standing_at_stops_still_gets_97_percent_right(
    runs: list[Run],
) -> None:
    # Without doors a red light next to a skipped stop looks like serving it: a bit lower bar.
    good, total = map(sum, zip(*(_matches(r, r.no_door_events) for r in runs), strict=True))
    assert good / total >= 0.97, f"{total - good} of {total} stops wrong"


def test_arrivals_and_departures_are_dated_within_seconds_of_the_truth(runs: list[Run]) -> None:
    arrival_errors, departure_errors = [], []
    for run in runs:
        # The next trip of a block starts where the last ended: the tracker has the bus
        # arrive there when the last trip finished, the simulator when it starts driving it.
        follow_on = {(p.trip_id, 0) for p in run.plans[1:]}
        for e in run.events:
            key = (e.trip_id, e.stop_index or 0)
            if e.kind == "arrived" and key in run.served and key not in follow_on:
                arrival_errors.append(abs(e.t - run.served[key]))
            if e.kind == "departed" and key in run.moved_off:
                departure_errors.append(abs(e.t - run.moved_off[key]))
    assert len(arrival_errors) > 100 and len(departure_errors) > 100
    assert max(arrival_errors) <= 5.0
    assert statistics.median(departure_errors) <= 2.0
    assert max(departure_errors) <= 10.0


def test_no_trip_raises_off_route(runs: list[Run]) -> None:
    kinds = [e.kind for r in runs for e in (*r.events, *r.no_door_events)]
    assert "off_route" not in kinds


def test_every_trip_starts_and_finishes_once_and_a_block_runs_on_into_its_next_trip(
    runs: list[Run],
) -> None:
    for run in runs:
        for plan in run.plans:
            kinds = [e.kind for e in run.events if e.trip_id == plan.trip_id]
            assert kinds.count("trip_started") == 1
            assert kinds.count("trip_finished") == 1
            assert kinds[-1] == "trip_finished"
    block = next(r for r in runs if len(r.plans) == 2)
    trips = [e.trip_id for e in block.events if e.kind in ("trip_started", "trip_finished")]
    first, second = (p.trip_id for p in block.plans)
    assert trips == [first, first, second, second]


def test_the_delay_follows_the_truth_between_stops(runs: list[Run]) -> None:
    errors = [abs(x) for r in runs for x in r.delay_errors]
    assert len(errors) > 1000
    assert statistics.median(errors) <= 3.0
    assert statistics.quantiles(errors, n=20)[-1] <= 15.0  # 95th percentile


# -- a detour -----------------------------------------------------------------------------------


def _detour(plan: TripPlan) -> tuple[list[tuple[float, float]], float, float, set[str]]:
    """A parallel street DETOUR_OFFSET_M beside a straight section of the path.

    Returns the detour's points (the whole drive), the distances along them where it leaves
    and rejoins the planned path, and the stops it cannot serve.
    """
    line = plan.path
    index = PathIndex(line)
    step = 100.0
    for d_a in itertools.count(0.2 * line.length_m, step):
        d_b = d_a + DETOUR_LENGTH_M
        if d_b > 0.8 * line.length_m:
            break
        a, b = line.point_at(d_a), line.point_at(d_b)
        if haversine_m(a[0], a[1], b[0], b[1]) < 0.95 * DETOUR_LENGTH_M:
            continue  # not straight enough for a parallel street
        # Perpendicular to the chord, to one side or the other.
        north, east = b[0] - a[0], (b[1] - a[1]) * 0.96  # cos(-16.9 deg)
        norm = (north**2 + east**2) ** 0.5
        for side in (1.0, -1.0):
            dn, de = -east / norm * DETOUR_OFFSET_M * side, north / norm * DETOUR_OFFSET_M * side
            shifted = [offset_m(la, lo, dn, de) for la, lo in _points_between(line, d_a, d_b)]
            if min(min(c.offset_m for c in index.candidates(*p)) for p in shifted) < 150.0:
                continue  # the parallel street would come near another part of the route
            before = _points_between(line, 0.0, d_a)
            after = _points_between(line, d_b, line.length_m)
            path = Polyline([*before, *shifted, *after])
            leave = Polyline(before).length_m
            rejoin = path.length_m - Polyline(after).length_m
            skipped = {s.stop_id for s in plan.stops if d_a - 30.0 <= s.dist_m <= d_b + 30.0}
            return list(path.points), leave, rejoin, skipped
    raise LookupError("no straight section for a detour")


def _points_between(line: Polyline, lo: float, hi: float) -> list[tuple[float, float]]:
    inner = [p for p, c in zip(line.points, line.cum_m, strict=True) if lo < c < hi]
    (la1, lo1, _), (la2, lo2, _) = line.point_at(lo), line.point_at(hi)
    return [(la1, lo1), *inner, (la2, lo2)]


def _detour_run(feed: Feed, *, diverted: bool) -> Run:
    tid = _trip_of_route(feed, DETOUR_ROUTE)
    plan = plan_trip(feed, tid, _service_day(feed, tid))
    points, leave, rejoin, skipped = _detour(plan)
    detour_plan = divert_plan(plan, points, skip=skipped)
    kept = [s for s in plan.stops if s.stop_id not in skipped]
    start = plan.first_departure_t - 60.0
    drive = Drive(
        detour_plan.path,
        [(s.stop_id, s.dist_m) for s in detour_plan.stops],
        start_t=start,
        seed=7,
    )
    run = Run([plan])
    trackers = _fresh_trackers([plan], start)
    if diverted:  # dispatch pushes the diversion before the bus gets there
        for tracker in trackers:
            tracker.replace_plan(detour_plan)
    run.plans = [detour_plan if diverted else plan]
    stop_map = [s.index for s in kept] if not diverted else list(range(len(kept)))
    _drive(run, trackers, plan, drive, stop_map, seed=7, noise_m=6.0, detour=(leave, rejoin))
    assert skipped, "the detour should leave out at least one stop"
    return run


@pytest.fixture(scope="module")
def detour_run(feed: Feed) -> Run:
    return _detour_run(feed, diverted=False)


def test_a_real_detour_raises_off_route_within_30_s_and_clears_when_back(detour_run: Run) -> None:
    run = detour_run
    assert run.leave_t is not None and run.back_t is not None
    off = [e for e in run.events if e.kind == "off_route"]
    back = [e for e in run.events if e.kind == "back_on_route"]
    assert len(off) == 1 and len(back) == 1
    assert run.leave_t < off[0].t <= run.leave_t + 30.0
    assert run.back_t - 15.0 <= back[0].t <= run.back_t + 30.0
    assert off[0].severity >= 3  # an alarm for dispatch


def test_stops_skipped_by_a_detour_are_passed_and_the_rest_still_match(detour_run: Run) -> None:
    good, total = _matches(detour_run, detour_run.events)
    assert good == total


def test_a_diversion_pushed_by_dispatch_is_followed_without_off_route(feed: Feed) -> None:
    run = _detour_run(feed, diverted=True)
    assert run.leave_t is not None
    kinds = {e.kind for e in run.events}
    assert "off_route" not in kinds and "back_on_route" not in kinds
    (plan,) = run.plans
    announced = {e.stop_id for e in run.events if e.stop_id is not None}
    assert announced == {s.stop_id for s in plan.stops}  # skipped stops never announced
    good, total = _matches(run, run.events)
    assert good == total


# -- route-only assignment ------------------------------------------------------------------------


def test_a_bus_assigned_only_a_route_is_matched_to_the_trip_it_is_driving(feed: Feed) -> None:
    tid = _trip_of_route(feed, "141")
    plan = plan_trip(feed, tid, _service_day(feed, tid))
    for fraction, late_s in ((0.1, 0.0), (0.5, 240.0), (0.9, -60.0)):
        d = fraction * plan.path.length_m
        lat, lon, heading = plan.path.point_at(d)
        lat, lon = offset_m(lat, lon, 8.0, -5.0)  # GPS error
        t = plan.scheduled_t_at(d) + late_s
        m = match_trip(feed, plan.route_id, lat, lon, t, track=heading)
        assert m is not None
        assert m.trip_id == tid and m.service_date == plan.service_date
        assert abs(m.delay_s - late_s) < 30.0
        assert abs(m.dist_m - d) < 30.0
