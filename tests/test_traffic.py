"""The simulator's traffic (hw_sim/traffic.py): repeatable with a seed, rush hours slower, slow
junctions slower still at peak, busier stops dwelling longer, and Drive driving it."""

from __future__ import annotations

import datetime as dt
import itertools

from hw_sim.drive import Drive, DriveParams
from hw_sim.traffic import SimStop, TrafficModel, drive_inputs, simulate_trip
from protocols.geo import Polyline, offset_m

TZ = "Europe/Berlin"
DAY = dt.date(2024, 3, 4)  # a Monday
SATURDAY = dt.date(2024, 3, 9)


def at(day: dt.date, hour: float) -> float:
    base = dt.datetime.combine(day, dt.time(), dt.timezone(dt.timedelta(hours=1)))
    return base.timestamp() + hour * 3600


def trip(start: float, n: int = 12, gap_m: float = 400.0) -> list[SimStop]:
    return [SimStop(f"s{i}", start + 90 * i, start + 90 * i, i * gap_m) for i in range(n)]


def test_the_same_seed_gives_the_same_service_and_another_seed_another() -> None:
    stops = trip(at(DAY, 8.0))
    one = simulate_trip(TrafficModel(seed=3, tz=TZ), stops, trip_key="t1", day=DAY)
    again = simulate_trip(TrafficModel(seed=3, tz=TZ), stops, trip_key="t1", day=DAY)
    other = simulate_trip(TrafficModel(seed=4, tz=TZ), stops, trip_key="t1", day=DAY)
    next_day = simulate_trip(
        TrafficModel(seed=3, tz=TZ), stops, trip_key="t1", day=DAY + dt.timedelta(days=1)
    )
    assert one == again
    assert one != other and one != next_day
    assert all(a.arrived_t <= a.departed_t for a in one)
    assert all(a.departed_t <= b.arrived_t for a, b in itertools.pairwise(one))


def test_rush_hours_are_slower_than_noon_and_night_on_weekdays_only() -> None:
    model = TrafficModel(seed=1, tz=TZ)

    def run_s(day: dt.date, hour: float) -> float:
        runs = []
        for k in range(20):
            calls = simulate_trip(model, trip(at(day, hour)), trip_key=f"t{k}", day=day)
            runs.append(calls[-1].arrived_t - calls[0].departed_t)
        return sum(runs) / len(runs)

    night, morning, noon, evening = (run_s(DAY, h) for h in (3.0, 8.0, 12.5, 17.25))
    assert morning > 1.15 * noon and evening > 1.2 * noon
    assert noon < 1.1 * night
    assert run_s(SATURDAY, 17.25) < 0.9 * evening


def test_a_named_junction_is_slower_at_peak_and_not_at_night() -> None:
    plain = TrafficModel(seed=1, tz=TZ, junction_share=0.0)
    junction = TrafficModel(seed=1, tz=TZ, junction_share=0.0, junctions=frozenset({("a", "b")}))
    assert junction.is_junction("a", "b") and not plain.is_junction("a", "b")
    peak, night = at(DAY, 17.25), at(DAY, 3.0)
    assert junction.segment_factor("a", "b", peak) > 1.8 * plain.segment_factor("a", "b", peak)
    assert junction.segment_factor("a", "b", night) < 1.01 * plain.segment_factor("a", "b", night)


def test_busier_stops_dwell_longer_and_longer_in_the_rush() -> None:
    model = TrafficModel(seed=2, tz=TZ)
    stops = sorted((f"stop{i}" for i in range(40)), key=model.busyness)
    quiet, busy = stops[0], stops[-1]
    assert model.dwell_mean_s(busy, at(DAY, 16.5)) > model.dwell_mean_s(quiet, at(DAY, 16.5))
    assert model.dwell_mean_s(busy, at(DAY, 16.5)) > model.dwell_mean_s(busy, at(DAY, 3.0))


def test_drive_drives_the_traffic_slower_at_peak() -> None:
    start = (-16.92, 145.77)
    line = Polyline([start, offset_m(*start, 0.0, 4000.0)])
    stops = [SimStop(f"s{i}", 0.0, 0.0, 800.0 * i) for i in range(6)]
    model = TrafficModel(seed=5, tz=TZ, junctions=frozenset({("s2", "s3")}))
    calm = DriveParams(traffic_noise=0.0)

    def drive_s(hour: float) -> float:
        t0 = at(DAY, hour)
        timed = [
            SimStop(s.stop_id, t0 + 120 * i, t0 + 120 * i, s.dist_m) for i, s in enumerate(stops)
        ]
        factors, dwells = drive_inputs(model, timed, trip_key="t", day=DAY)
        assert drive_inputs(model, timed, trip_key="t", day=DAY) == (factors, dwells)
        drive = Drive(
            line,
            [(s.stop_id, s.dist_m) for s in stops],
            start_t=t0,
            seed=1,
            params=calm,
            segment_factors=factors,
            dwells_s=dwells,
        )
        t = t0
        while not drive.finished and t < t0 + 4 * 3600:
            t += 1.0
            drive.step(t)
        return t - t0

    assert drive_s(17.25) > 1.3 * drive_s(3.0)
