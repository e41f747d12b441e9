"""The bus drive model: physically plausible, stops where it should, deterministic per seed."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_sim.drive import Drive, DriveParams
from hw_sim.truth import VehicleTruth
from protocols.geo import Polyline, offset_m

START = (-16.92, 145.77)
T0 = 1_700_000_000.0
CALM = DriveParams(traffic_noise=0.0, stop_prob=1.0)


def _straight(length_m: float) -> Polyline:
    return Polyline([START, offset_m(*START, 0.0, length_m)])


def _run(drive: Drive, dt: float, limit_s: float = 4 * 3600) -> list[VehicleTruth]:
    out = [drive.step(drive.t)]
    t = drive.t
    while not drive.finished and t < T0 + limit_s:
        t += dt
        out.append(drive.step(t))
    return out


@st.composite
def routes(draw: st.DrawFn) -> tuple[Polyline, list[tuple[str, float]]]:
    """A wiggly street of 2..12 segments and stops somewhere along it, in order."""
    points = [START]
    heading = draw(st.floats(0, 360))
    for _ in range(draw(st.integers(2, 12))):
        heading += draw(st.floats(-120, 120))
        length = draw(st.floats(20, 600))
        rad = math.radians(heading)
        points.append(offset_m(*points[-1], length * math.cos(rad), length * math.sin(rad)))
    line = Polyline(points)
    fractions = sorted(draw(st.lists(st.floats(0, 1), min_size=0, max_size=8)))
    dists = [0.0, *(f * line.length_m for f in fractions), line.length_m]
    return line, [(f"S{i}", d) for i, d in enumerate(dists)]


params_st = st.builds(
    DriveParams,
    traffic_noise=st.floats(0, 0.5),
    stop_prob=st.floats(0, 1),
    dwell_s=st.tuples(st.floats(2, 10), st.floats(10, 30)),
    max_speed_mps=st.floats(8, 20),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    routes(),
    params_st,
    st.integers(0, 2**32),
    st.lists(st.floats(0.05, 4.0), min_size=5, max_size=20),
)
def test_the_bus_drives_plausibly_whatever_the_route_and_step_sizes(
    route: tuple[Polyline, list[tuple[str, float]]],
    params: DriveParams,
    seed: int,
    steps: list[float],
) -> None:
    line, stops = route
    drive = Drive(line, stops, start_t=T0, seed=seed, params=params, odometer_m=1000.0)
    stop_dists = {sid: d for sid, d in stops}
    prev = drive.step(T0)
    prev_dist = drive.distance_m
    i = 0
    while not drive.finished and prev.t < T0 + 3 * 3600:
        t = prev.t + steps[i % len(steps)]
        i += 1
        now = drive.step(t)
        assert 0.0 <= now.speed_mps <= params.max_speed_mps + 1e-9
        assert drive.distance_m >= prev_dist
        assert now.odometer_m - 1000.0 == pytest.approx(drive.distance_m, abs=1e-6)
        if now.doors_open:
            assert now.speed_mps == 0.0
            assert now.stop_id is not None
            assert drive.distance_m == pytest.approx(stop_dists[now.stop_id], abs=0.01)
        if now.speed_mps == 0.0:
            assert now.engine_rpm == params.idle_rpm
        else:
            assert now.engine_rpm > params.idle_rpm
        # Never faster than what still allows braking to the next planned halt.
        ahead = [h.dist_m for h in drive.halts if h.dist_m >= drive.distance_m - 1e-6]
        if ahead:
            room = max(0.0, ahead[0] - drive.distance_m)
            assert now.speed_mps <= math.sqrt(2 * params.decel * room) + 0.5
        assert now.fuel_pct <= prev.fuel_pct
        assert prev.coolant_c <= now.coolant_c <= params.coolant_c
        prev, prev_dist = now, drive.distance_m
    assert drive.finished
    assert drive.distance_m == pytest.approx(stops[-1][1], abs=0.01)


@settings(max_examples=40, deadline=None)
@given(routes(), st.integers(0, 2**32))
def test_the_bus_dwells_with_doors_open_at_every_stop_it_serves(
    route: tuple[Polyline, list[tuple[str, float]]], seed: int
) -> None:
    line, stops = route
    drive = Drive(line, stops, start_t=T0, seed=seed, params=CALM)
    truths = _run(drive, 0.5)
    served = [t.stop_index for t in truths if t.doors_open and t.stop_index is not None]
    assert sorted(set(served)) == list(range(len(stops)))  # stop_prob=1: every stop
    assert served == sorted(served)  # in trip order


def test_the_first_and_last_stops_are_always_served() -> None:
    line = _straight(3000.0)
    stops = [(f"S{i}", d) for i, d in enumerate((0.0, 1000.0, 2000.0, 3000.0))]
    params = DriveParams(stop_prob=0.0)
    truths = _run(Drive(line, stops, start_t=T0, seed=5, params=params), 0.5)
    assert {t.stop_id for t in truths if t.doors_open} == {"S0", "S3"}


def test_the_bus_starts_dwelling_at_its_first_stop_and_then_leaves() -> None:
    drive = Drive(_straight(1000.0), [("A", 0.0), ("B", 1000.0)], start_t=T0, seed=1, params=CALM)
    first = drive.step(T0 + 3.0)
    assert first.stop_id == "A" and first.doors_open and first.speed_mps == 0.0
    later = drive.step(T0 + 60.0)
    assert later.speed_mps > 0 and later.stop_id is None and not later.doors_open


def test_acceleration_and_braking_stay_within_the_limits() -> None:
    drive = Drive(
        _straight(3000.0),
        [("A", 0.0), ("B", 1500.0), ("C", 3000.0)],
        start_t=T0,
        seed=2,
        params=CALM,
    )
    truths = _run(drive, 0.2)
    for a, b in itertools.pairwise(truths):
        dv = (b.speed_mps - a.speed_mps) / (b.t - a.t)
        assert dv <= CALM.accel + 1e-6
        assert dv >= -CALM.decel - 0.05
    assert max(t.speed_mps for t in truths) == pytest.approx(CALM.max_speed_mps, abs=0.01)


def test_the_bus_slows_down_for_a_right_angle_corner() -> None:
    corner = offset_m(*START, 0.0, 800.0)
    line = Polyline([START, corner, offset_m(*corner, -800.0, 0.0)])
    drive = Drive(line, [("A", 0.0), ("B", line.length_m)], start_t=T0, seed=3, params=CALM)
    at_corner: list[float] = []
    straight: list[float] = []
    t = T0
    while not drive.finished:
        t += 0.2
        v = drive.step(t).speed_mps
        if abs(drive.distance_m - 800.0) < 5.0:
            at_corner.append(v)
        elif 300.0 < drive.distance_m < 500.0:
            straight.append(v)
    assert max(straight) > 12.0
    assert at_corner and max(at_corner) < 7.0


def test_traffic_makes_the_same_trip_take_longer() -> None:
    line = _straight(8000.0)
    stops = [("A", 0.0), ("B", 8000.0)]

    def duration(params: DriveParams, seed: int) -> float:
        truths = _run(Drive(line, stops, start_t=T0, seed=seed, params=params), 1.0)
        return truths[-1].t - T0

    calm = duration(CALM, 1)
    busy = [duration(replace(CALM, traffic_noise=0.3), s) for s in range(5)]
    assert min(busy) > calm


def test_the_same_seed_drives_the_same_trip_and_another_seed_differs() -> None:
    line = _straight(5000.0)
    stops = [(f"S{i}", 1000.0 * i) for i in range(6)]
    a = _run(Drive(line, stops, start_t=T0, seed=7), 1.0)
    b = _run(Drive(line, stops, start_t=T0, seed=7), 1.0)
    c = _run(Drive(line, stops, start_t=T0, seed=8), 1.0)
    assert a == b
    assert [t.speed_mps for t in a] != [t.speed_mps for t in c]


def test_the_step_rate_hardly_changes_the_drive() -> None:
    line = _straight(5000.0)
    stops = [(f"S{i}", 1000.0 * i) for i in range(6)]
    coarse = _run(Drive(line, stops, start_t=T0, seed=4), 1.0)[-1].t
    fine = _run(Drive(line, stops, start_t=T0, seed=4), 0.1)[-1].t
    assert coarse - T0 == pytest.approx(fine - T0, rel=0.02)


def test_the_engine_warms_up_and_burns_fuel_as_the_odometer_counts() -> None:
    line = _straight(20000.0)
    stops = [(f"S{i}", 2000.0 * i) for i in range(11)]
    drive = Drive(line, stops, start_t=T0, seed=9, odometer_m=123_456.0)
    first = drive.step(T0)
    truths = _run(drive, 2.0)
    last = truths[-1]
    assert first.coolant_c < 40.0
    assert last.coolant_c == pytest.approx(85.0, abs=2.0)
    assert 0 < first.fuel_pct - last.fuel_pct < 5.0  # 20 km on a 250 l tank
    assert last.odometer_m == pytest.approx(123_456.0 + 20_000.0, abs=0.5)
    moving = [t for t in truths if t.speed_mps > 1.0]
    assert all(800.0 <= t.engine_rpm <= 2200.0 for t in moving)


def test_a_drive_started_mid_route_skips_the_stops_behind_it() -> None:
    line = _straight(3000.0)
    stops = [(f"S{i}", 1000.0 * i) for i in range(4)]
    drive = Drive(line, stops, start_t=T0, seed=1, params=CALM, start_dist_m=1500.0)
    truths = _run(drive, 0.5)
    assert {t.stop_id for t in truths if t.doors_open} == {"S2", "S3"}
    assert truths[0].odometer_m == 0.0 and truths[-1].odometer_m == pytest.approx(1500.0)


def test_after_the_trip_the_bus_idles_at_its_last_stop_with_doors_closed() -> None:
    drive = Drive(_straight(500.0), [("A", 0.0), ("B", 500.0)], start_t=T0, seed=1)
    _run(drive, 1.0)
    assert drive.finished
    later = drive.step(drive.t + 600.0)
    assert later.speed_mps == 0.0 and not later.doors_open and later.stop_id is None
    assert later.engine_rpm == DriveParams().idle_rpm


def test_time_cannot_go_backwards() -> None:
    drive = Drive(_straight(500.0), [("A", 0.0), ("B", 500.0)], start_t=T0, seed=1)
    drive.step(T0 + 10.0)
    with pytest.raises(ValueError, match="backwards"):
        drive.step(T0 + 5.0)
