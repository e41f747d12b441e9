"""Journey tracking on small made-up routes: stops, loops, off-route, delay, plans, matching."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_sim.drive import Drive, DriveParams
from onboard.journey.plan import (
    PlannedStop,
    TripPlan,
    block_plans,
    divert_plan,
    match_trip,
    plan_trip,
    plans_for_assignment,
    service_day_origin,
)
from onboard.journey.tracker import (
    ROUTE_TRANSITIONS,
    STOP_TRANSITIONS,
    JourneyEvent,
    JourneyTracker,
)
from protocols import codec
from protocols.geo import Polyline, offset_m
from protocols.gtfs.feed import Feed, parse_feed
from protocols.schemas import Event

START = (-16.92, 145.77)
TZ = "Australia/Brisbane"
DAY = date(2024, 5, 6)  # a Monday
ORIGIN = service_day_origin(DAY, TZ)
CALM = DriveParams(traffic_noise=0.0, stop_prob=1.0)


def _east(length_m: float, step_m: float = 100.0) -> list[tuple[float, float]]:
    n = int(length_m // step_m)
    return [offset_m(*START, 0.0, i * step_m) for i in range(n + 1)]


def _plan(
    points: list[tuple[float, float]],
    stop_dists: list[float],
    *,
    trip_id: str = "T1",
    dep_s: int = 8 * 3600,
    s_per_m: float = 0.12,
) -> TripPlan:
    """A trip along `points` with a stop at each distance, on a timetable of constant speed."""
    line = Polyline(points)
    stops = []
    for i, d in enumerate(stop_dists):
        lat, lon, _ = line.point_at(d)
        at = dep_s + round(d * s_per_m)
        stops.append(PlannedStop(i, i + 1, f"S{i}", f"Stop {i}", lat, lon, d, at, at))
    return TripPlan(trip_id, "R1", "1", "Town", None, DAY, ORIGIN, line, tuple(stops))


def _drive(
    plan: TripPlan, *, seed: int = 1, params: DriveParams = CALM, lead_s: float = 30.0
) -> Drive:
    stops = [(s.stop_id, s.dist_m) for s in plan.stops]
    return Drive(
        plan.path, stops, start_t=plan.first_departure_t - lead_s, seed=seed, params=params
    )


def _ride(
    tracker: JourneyTracker,
    drive: Drive,
    *,
    noise_m: float = 0.0,
    doors: bool = True,
    seed: int = 0,
    until: float | None = None,
    served: set[int] | None = None,
    each: Callable[[float], None] | None = None,
) -> list[JourneyEvent]:
    """Feed the tracker one fix a second from the drive (white GPS noise of `noise_m`)."""
    rng = random.Random(seed)
    events: list[JourneyEvent] = []
    t = drive.t
    while not drive.finished or (until is not None and t < until):
        t += 1.0
        truth = drive.step(t)
        lat, lon = offset_m(truth.lat, truth.lon, rng.gauss(0, noise_m), rng.gauss(0, noise_m))
        events += tracker.update(
            t,
            lat,
            lon,
            speed=truth.speed_mps,
            track=truth.heading_deg,
            hdop=1.0,
            doors_open=truth.doors_open if doors else None,
        )
        if served is not None and truth.stop_index is not None:
            served.add(truth.stop_index)
        if each is not None:
            each(t)
    return events


def _outcomes(events: list[JourneyEvent]) -> list[tuple[int | None, str]]:
    return [(e.stop_index, e.kind) for e in events if e.kind in ("arrived", "passed")]


def _expected(plan: TripPlan, served: set[int]) -> list[tuple[int | None, str]]:
    return [(s.index, "arrived" if s.index in served else "passed") for s in plan.stops]


# -- stops ------------------------------------------------------------------------------------


def test_served_stops_are_arrived_and_departed_and_skipped_ones_are_passed() -> None:
    plan = _plan(_east(3000), [0, 400, 800, 1200, 1600, 2000, 2400, 3000])
    drive = _drive(plan, seed=3, params=DriveParams(traffic_noise=0.0, stop_prob=0.5))
    served: set[int] = set()
    events = _ride(JourneyTracker(plan, now=drive.t), drive, noise_m=3.0, served=served)
    assert 0 < len(served) - 2 < len(plan.stops) - 2, "the seed should serve some stops, not all"
    assert _outcomes(events) == _expected(plan, served)
    departed = [e.stop_index for e in events if e.kind == "departed"]
    assert departed == sorted(served - {len(plan.stops) - 1})
    kinds = [e.kind for e in events]
    assert kinds.count("trip_started") == 1 and kinds[-1] == "trip_finished"


def test_standing_still_at_a_stop_counts_without_a_door_signal_but_not_with_doors_shut() -> None:
    plan = _plan(_east(1500), [0, 700, 1500])
    served: set[int] = set()
    events = _ride(JourneyTracker(plan, now=0), _drive(plan), doors=False, served=served)
    assert _outcomes(events) == _expected(plan, served) == [(0, "arrived"), (1, "arrived"),
                                                            (2, "arrived")]  # fmt: skip
    tracker = JourneyTracker(plan, now=0)
    drive = _drive(plan)
    t = drive.t
    events = []
    while not drive.finished:
        t += 1.0
        truth = drive.step(t)
        # The doors report shut all the time: the bus only stood, as at a red light.
        events += tracker.update(t, truth.lat, truth.lon, speed=truth.speed_mps, doors_open=False)
    assert _outcomes(events) == [(0, "passed"), (1, "passed"), (2, "arrived")]  # terminus


@st.composite
def _routes(draw: st.DrawFn) -> tuple[list[tuple[float, float]], list[float]]:
    """A wiggly street and stops at least 80 m apart along it."""
    points = [START]
    heading = draw(st.floats(0, 360))
    for _ in range(draw(st.integers(2, 10))):
        heading += draw(st.floats(-100, 100))
        length = draw(st.floats(80, 600))
        rad = math.radians(heading)
        points.append(offset_m(*points[-1], length * math.cos(rad), length * math.sin(rad)))
    length_m = Polyline(points).length_m
    inner = draw(st.lists(st.floats(0.05, 0.95), max_size=8))
    dists = [0.0]
    for d in sorted(f * length_m for f in inner):
        if d - dists[-1] >= 80.0 and length_m - d >= 80.0:
            dists.append(d)
    return points, [*dists, length_m]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    route=_routes(),
    seed=st.integers(0, 1000),
    stop_prob=st.floats(0, 1),
    noise_m=st.floats(0, 4),
    doors=st.booleans(),
)
def test_on_any_street_the_stop_sequence_matches_what_the_bus_did(
    route: tuple[list[tuple[float, float]], list[float]],
    seed: int,
    stop_prob: float,
    noise_m: float,
    doors: bool,
) -> None:
    points, dists = route
    plan = _plan(points, dists)
    # No red lights: without a door signal a red light at a skipped stop looks like a halt.
    params = DriveParams(traffic_noise=0.0, stop_prob=stop_prob)
    drive = _drive(plan, seed=seed, params=params)
    served: set[int] = set()
    tracker = JourneyTracker(plan, now=drive.t)
    events = _ride(tracker, drive, noise_m=noise_m, doors=doors, seed=seed, served=served)
    assert _outcomes(events) == _expected(plan, served)
    kinds = [e.kind for e in events]
    assert "off_route" not in kinds
    assert kinds.count("trip_finished") == 1 and tracker.state.finished


def test_a_street_driven_out_and_back_is_never_matched_to_its_other_direction() -> None:
    out = _east(1200, 50.0)
    back = list(reversed(out))[1:]
    # Stops at the same places on the way out and on the way back (opposite kerbs).
    plan = _plan(out + back, [0, 300, 600, 900, 1500, 1800, 2100, 2400])
    served: set[int] = set()
    drive = _drive(plan, seed=5)
    events = _ride(JourneyTracker(plan, now=drive.t), drive, noise_m=5.0, served=served)
    assert _outcomes(events) == _expected(plan, served)
    assert len(served) == len(plan.stops)


def _square(side_m: float) -> list[tuple[float, float]]:
    corners = [(0, 0), (0, side_m), (side_m, side_m), (side_m, 0), (0, 0)]
    pts: list[tuple[float, float]] = []
    for (n1, e1), (n2, e2) in itertools.pairwise(corners):
        pts += [offset_m(*START, n1 + (n2 - n1) * f / 5, e1 + (e2 - e1) * f / 5) for f in range(5)]
    return [*pts, START]


def test_a_block_of_loops_continues_with_the_next_loop_at_its_start_not_its_end() -> None:
    points = _square(600.0)
    first = _plan(points, [0, 600, 1200, 1800, 2400], trip_id="L1", dep_s=8 * 3600)
    second = _plan(points, [0, 600, 1200, 1800, 2400], trip_id="L2", dep_s=8 * 3600 + 900)
    tracker = JourneyTracker([first, second], now=first.first_departure_t - 30)
    served_first: set[int] = set()
    events = _ride(
        tracker, _drive(first), noise_m=4.0, served=served_first, until=second.first_departure_t
    )
    assert tracker.state.trip_id == "L2" and tracker.state.stop_index == 0
    assert tracker.state.dist_m is not None and tracker.state.dist_m < 50.0
    served_second: set[int] = set()
    drive = Drive(
        second.path,
        [(s.stop_id, s.dist_m) for s in second.stops],
        start_t=tracker.state.t,
        seed=2,
        params=CALM,
    )
    events += _ride(tracker, drive, noise_m=4.0, served=served_second)
    for plan, served in ((first, served_first), (second, served_second)):
        mine = [e for e in events if e.trip_id == plan.trip_id]
        assert _outcomes(mine) == _expected(plan, served)
        assert [e.kind for e in mine].count("trip_finished") == 1


# -- route adherence --------------------------------------------------------------------------


def _detour_points(leave_m: float, rejoin_m: float, off_m: float) -> list[tuple[float, float]]:
    before = _east(leave_m)
    side = [offset_m(*START, off_m, e) for e in range(int(leave_m), int(rejoin_m) + 1, 100)]
    after = [offset_m(*START, 0.0, e) for e in range(int(rejoin_m), 3001, 100)]
    return [*before, *side, *after]


def test_a_detour_raises_off_route_within_30_s_and_clears_after_rejoining() -> None:
    plan = _plan(_east(3000), [0, 500, 1000, 1500, 2000, 2500, 3000])
    detour = divert_plan(plan, _detour_points(800, 1800, 200.0), skip={"S2", "S3"})
    drive = Drive(
        detour.path,
        [(s.stop_id, s.dist_m) for s in detour.stops],
        start_t=plan.first_departure_t,
        seed=1,
        params=CALM,
    )
    tracker = JourneyTracker(plan, now=drive.t)
    left: list[float] = []
    back: list[float] = []

    def watch(t: float) -> None:
        if not left and drive.distance_m > 800.5:
            left.append(t)
        if not back and drive.distance_m >= detour.stops[2].dist_m - 200.0:
            back.append(t)

    events = _ride(tracker, drive, noise_m=4.0, each=watch)
    off = [e for e in events if e.kind == "off_route"]
    on = [e for e in events if e.kind == "back_on_route"]
    assert len(off) == 1 and len(on) == 1
    assert left[0] < off[0].t <= left[0] + 30.0
    assert back[0] - 10.0 <= on[0].t <= back[0] + 30.0
    assert _outcomes(events) == [(0, "arrived"), (1, "arrived"), (2, "passed"), (3, "passed"),
                                 (4, "arrived"), (5, "arrived"), (6, "arrived")]  # fmt: skip


def test_a_diverted_plan_is_followed_without_off_route_and_skips_stops_silently() -> None:
    plan = _plan(_east(3000), [0, 500, 1000, 1500, 2000, 2500, 3000])
    detour = divert_plan(plan, _detour_points(800, 1800, 200.0), skip={"S2", "S3"})
    assert detour.diverted and [s.sequence for s in detour.stops] == [1, 2, 5, 6, 7]
    drive = Drive(
        detour.path,
        [(s.stop_id, s.dist_m) for s in detour.stops],
        start_t=plan.first_departure_t,
        seed=1,
        params=CALM,
    )
    tracker = JourneyTracker(plan, now=drive.t)
    events: list[JourneyEvent] = []

    def divert_at_stop_1(t: float) -> None:
        # Dispatch pushes the diversion while the bus dwells at S1.
        if tracker.state.stop_id == "S1" and tracker.state.at_stop and not tracker.plan.diverted:
            tracker.replace_plan(detour)
            assert tracker.state.at_stop and tracker.state.stop_id == "S1"
            assert [c.stop_id for c in tracker.state.upcoming] == ["S1", "S4", "S5", "S6"]

    events = _ride(tracker, drive, noise_m=4.0, each=divert_at_stop_1)
    assert tracker.plan.diverted
    kinds = [e.kind for e in events]
    assert "off_route" not in kinds and "passed" not in kinds
    assert [e.stop_id for e in events if e.kind == "arrived"] == ["S0", "S1", "S4", "S5", "S6"]


def test_a_few_wild_fixes_do_not_raise_off_route_before_or_after_a_real_detour() -> None:
    plan = _plan(_east(3000), [0, 3000])
    tracker = JourneyTracker(plan, now=plan.first_departure_t)
    events: list[JourneyEvent] = []
    for i in range(300):
        t = plan.first_departure_t + i
        north = 0.0
        if 50 <= i < 56 or 250 <= i < 256:
            north = 250.0  # six seconds of multipath, 250 m off
        elif 120 <= i < 180:
            north = 200.0  # a minute on a parallel street
        lat, lon = offset_m(*START, north, 8.0 * i)
        events += tracker.update(t, lat, lon, speed=8.0, track=90.0, hdop=1.2)
    assert [e.kind for e in events if "route" in e.kind] == ["off_route", "back_on_route"]
    assert tracker.state.dist_m == pytest.approx(8.0 * 299, abs=5.0)


def test_after_a_gps_outage_on_a_loop_the_timetable_tells_which_lap_the_bus_is_on() -> None:
    lap = _square(600.0)
    plan = _plan([*lap, *lap[1:]], [0, 1200, 2400, 3600, 4800])  # two laps, 8.3 m/s
    line = plan.path
    tracker = JourneyTracker(plan, now=plan.first_departure_t)
    speed = 1 / 0.12
    events: list[JourneyEvent] = []
    for i in [*range(100), *range(388, 420)]:  # no fix for the 288 s of one lap
        lat, lon, heading = line.point_at(i * speed)
        # The first fix after the gap comes while the bus waits at a red light.
        v = 0.0 if i == 388 else speed
        events += tracker.update(plan.first_departure_t + i, lat, lon, speed=v, track=heading)
        if i == 388:
            assert tracker.state.dist_m == pytest.approx(388 * speed, abs=10.0)
    assert [e.stop_index for e in events if e.kind == "passed"] == [0, 1, 2]
    assert "off_route" not in {e.kind for e in events}


def test_fixes_with_poor_hdop_estimated_or_from_the_past_are_ignored() -> None:
    plan = _plan(_east(3000), [0, 3000])
    tracker = JourneyTracker(plan, now=plan.first_departure_t)
    t = plan.first_departure_t
    tracker.update(t + 1, *offset_m(*START, 0, 100.0), speed=8.0, hdop=1.0)
    assert tracker.state.dist_m == pytest.approx(100.0, abs=1.0)
    far = offset_m(*START, 0, 600.0)
    tracker.update(t + 2, *far, speed=8.0, hdop=12.0)
    tracker.update(t + 3, *far, speed=8.0, estimated=True)
    tracker.update(t, *far, speed=8.0)
    tracker.update(t + 4, None, None)
    assert tracker.ignored == 4
    assert tracker.state.dist_m == pytest.approx(100.0, abs=1.0)


# -- delay ------------------------------------------------------------------------------------


def test_delay_is_lateness_against_the_timetable_and_propagates_to_expected_times() -> None:
    plan = _plan(_east(3000), [0, 1000, 2000, 3000], s_per_m=0.12)
    tracker = JourneyTracker(plan, now=plan.first_departure_t)
    late = 150.0
    for i in range(200):  # through S0 and S1 without stopping, on the timetable's speed
        d = i / 0.12
        tracker.update(
            plan.first_departure_t + late + i,
            *offset_m(*START, 0.0, d),
            speed=1 / 0.12,
            track=90.0,
            doors_open=False,
        )
    state = tracker.state
    assert state.delay_s == pytest.approx(late, abs=2.0)
    assert state.stop_id == "S2" and not state.at_stop
    for call in state.upcoming:
        assert call.expected_t - call.scheduled_t == pytest.approx(late, abs=2.0)


def test_a_bus_waiting_at_the_terminus_is_not_early_and_late_once_its_departure_passes() -> None:
    plan = _plan(_east(3000), [0, 1000, 3000])
    tracker = JourneyTracker(plan, now=plan.first_departure_t - 600)
    for t in range(-300, 61, 30):
        tracker.update(plan.first_departure_t + t, *START, speed=0.0, doors_open=True)
        assert tracker.state.delay_s == pytest.approx(max(0.0, t))
    assert tracker.state.at_stop and tracker.state.stop_index == 0


# -- tables, events ---------------------------------------------------------------------------


def test_the_state_tables_answer_every_input_of_every_state_they_lead_to() -> None:
    for table, terminal in ((STOP_TRANSITIONS, {"departed", "passed"}), (ROUTE_TRANSITIONS, set())):
        states = {s for s, _ in table}
        for state in states:
            inputs = {i for s, i in table if s == state}
            assert inputs >= {i for _, i in table if "held" not in i} or state == "pending"
        assert {n for n, _ in table.values()} <= states | terminal


def test_journey_events_fit_the_outbox_event_schema() -> None:
    plan = _plan(_east(3000), [0, 1000, 3000])
    tracker = JourneyTracker(plan, now=plan.first_departure_t - 30)
    events = _ride(tracker, _drive(plan))
    events.append(JourneyEvent("off_route", 1.0, "T1", "R1", dist_m=12.3))
    for e in events:
        sent = Event(seq=1, t=e.t, kind=e.kind, severity=e.severity, data=e.data())
        assert codec.decode(Event, codec.encode(sent)) == sent
    assert events[-1].severity >= 3 and all(e.severity == 0 for e in events[:-1])


def test_replacing_the_plan_with_another_trip_starts_tracking_it_afresh() -> None:
    plan = _plan(_east(3000), [0, 1000, 3000])
    other = _plan(list(reversed(_east(3000))), [0, 2000, 3000], trip_id="T2", dep_s=9 * 3600)
    tracker = JourneyTracker([plan, plan], now=plan.first_departure_t)
    tracker.update(plan.first_departure_t + 60, *offset_m(*START, 0, 1500.0), speed=8.0)
    tracker.replace_plan(other)
    tracker.update(plan.first_departure_t + 61, *offset_m(*START, 0, 1490.0), speed=8.0)
    state = tracker.state
    assert state.trip_id == "T2" and state.stop_id == "S1"
    assert state.dist_m == pytest.approx(1510.0, abs=5.0)


# -- plans, calendars, blocks, route matching ---------------------------------------------------


def _feed() -> Feed:
    shape = "\n".join(
        f"E,{la:.6f},{lo:.6f},{i}" for i, (la, lo) in enumerate(_east(3000, 500.0))
    ) + "\n" + "\n".join(
        f"W,{la:.6f},{lo:.6f},{i}" for i, (la, lo) in enumerate(reversed(_east(3000, 500.0)))
    )  # fmt: skip
    stops = "\n".join(
        f"S{i},Stop {i},{la:.6f},{lo:.6f}" for i, (la, lo) in enumerate(_east(3000, 1000.0))
    )

    def times(tid: str, order: list[int], h: int, m: int) -> str:
        return "\n".join(
            f"{tid},{h:02d}:{m + 3 * k:02d}:00,{h:02d}:{m + 3 * k:02d}:00,S{s},{k + 1}"
            for k, s in enumerate(order)
        )

    trips = [  # (trip, direction, shape, service, block, hour, minute)
        ("E08", 0, "E", "WK", "B1", 8, 0),
        ("W08", 1, "W", "WK", "B1", 8, 20),
        ("E09", 0, "E", "WK", "B1", 9, 0),
        ("E0830", 0, "E", "SA", "B1", 8, 30),
        ("W0840", 1, "W", "WK", None, 8, 40),
    ]
    return parse_feed(
        {
            "agency.txt": f"agency_name,agency_url,agency_timezone\nBus,http://x,{TZ}\n",
            "routes.txt": "route_id,route_short_name,route_long_name,route_type\nR1,1,Line,3\n",
            "shapes.txt": "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n" + shape,
            "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n" + stops,
            "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,"
            "sunday,start_date,end_date\nWK,1,1,1,1,1,0,0,20240101,20241231\n"
            "SA,0,0,0,0,0,1,0,20240101,20241231\n",
            "calendar_dates.txt": "service_id,date,exception_type\nWK,20240501,2\nSA,20240501,1\n",
            "trips.txt": "route_id,service_id,trip_id,direction_id,block_id,shape_id\n"
            + "\n".join(f"R1,{sv},{t},{d},{b or ''},{sh}" for t, d, sh, sv, b, _, _ in trips),
            "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
            + "\n".join(
                times(t, [0, 1, 2, 3] if d == 0 else [3, 2, 1, 0], h, m)
                for t, d, _, _, _, h, m in trips
            ),
        }
    )


def test_a_service_day_counts_from_noon_minus_12_hours_on_daylight_saving_days() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    spring = date(2024, 3, 31)  # clocks go forward at 02:00: that day has 23 hours
    midnight = datetime(2024, 3, 31, tzinfo=berlin).timestamp()
    assert service_day_origin(spring, "Europe/Berlin") == midnight - 3600
    ordinary = date(2024, 5, 6)
    assert service_day_origin(ordinary, TZ) == datetime(2024, 5, 6, tzinfo=ZoneInfo(TZ)).timestamp()


def test_a_trip_plan_carries_stops_distances_and_unix_times_of_its_service_day() -> None:
    plan = plan_trip(_feed(), "W08", DAY)
    assert [s.stop_id for s in plan.stops] == ["S3", "S2", "S1", "S0"]
    assert [round(s.dist_m, -1) for s in plan.stops] == [0, 1000, 2000, 3000]
    assert plan.first_departure_t == datetime(2024, 5, 6, 8, 20, tzinfo=ZoneInfo(TZ)).timestamp()
    assert plan.scheduled_t_at(1500.0) == pytest.approx(plan.first_departure_t + 270, abs=2)


def test_a_block_is_its_trips_running_that_day_in_order_of_departure() -> None:
    feed = _feed()
    weekday = block_plans(feed, "B1", DAY)
    assert [p.trip_id for p in weekday] == ["E08", "W08", "E09"]
    saturday = block_plans(feed, "B1", date(2024, 5, 11))
    assert [p.trip_id for p in saturday] == ["E0830"]
    holiday = block_plans(feed, "B1", date(2024, 5, 1))  # a Wednesday on Saturday service
    assert [p.trip_id for p in holiday] == ["E0830"]


def test_an_assignment_becomes_the_plans_to_track() -> None:
    feed = _feed()
    t = datetime(2024, 5, 6, 8, 25, tzinfo=ZoneInfo(TZ)).timestamp()
    by_block = plans_for_assignment(feed, block_id="B1", t=t)
    assert [p.trip_id for p in by_block] == ["E08", "W08", "E09"]
    from_trip = plans_for_assignment(feed, block_id="B1", trip_id="W08", t=t)
    assert [p.trip_id for p in from_trip] == ["W08", "E09"]
    (one,) = plans_for_assignment(feed, trip_id="E09", t=t)
    assert one.service_date == DAY
    at = offset_m(*START, 5.0, 1800.0)
    (matched,) = plans_for_assignment(feed, route_id="R1", t=t, position=at, track=270.0)
    assert matched.trip_id == "W08"
    assert plans_for_assignment(feed, route_id="R1", t=t) == []


def test_route_matching_picks_the_trip_running_there_now_in_the_bus_direction() -> None:
    feed = _feed()

    def at(h: int, m: int) -> float:
        return datetime(2024, 5, 6, h, m, tzinfo=ZoneInfo(TZ)).timestamp()

    lat, lon = offset_m(*START, -6.0, 1500.0)
    east = match_trip(feed, "R1", lat, lon, at(8, 5), track=90.0)
    assert east is not None and east.trip_id == "E08"
    assert east.dist_m == pytest.approx(1500.0, abs=10.0)
    assert east.delay_s == pytest.approx(30.0, abs=5.0)
    west = match_trip(feed, "R1", lat, lon, at(8, 44), track=270.0)
    assert west is not None and west.trip_id == "W0840"
    # Nothing of route R1 runs at midnight, and nothing passes 2 km off the street.
    assert match_trip(feed, "R1", lat, lon, at(0, 0)) is None
    far = offset_m(*START, 2000.0, 1500.0)
    assert match_trip(feed, "R1", *far, at(8, 5)) is None
