"""The bus shows the model's predicted times: with central's model its journey's expected
times (display, portal, driver terminal) come from the shared predictor; without one, the
timetable + current delay as before."""

from __future__ import annotations

from datetime import date

import pytest

from onboard.journey.plan import PlannedStop, TripPlan, service_day_origin
from onboard.journey.predicted import with_predictions
from onboard.journey.runtime import JourneyRuntime
from onboard.journey.tracker import JourneyTracker
from protocols.geo import Polyline, offset_m
from protocols.gtfs.feed import Feed
from protocols.predict import ALL_DAY, DwellTime, ModelTables, PredictionModel, SegmentTime

START = (-16.92, 145.77)
TZ = "Australia/Brisbane"
DAY = date(2024, 5, 6)  # a Monday
LATE = 150.0


def plan_and_tracker() -> tuple[TripPlan, JourneyTracker]:
    """Stops every 1000 m, 120 s apart in the timetable; the bus drives it 150 s late and is
    between S1 and S2 (as tests/test_journey.py's delay test)."""
    line = Polyline([offset_m(*START, 0.0, i * 100.0) for i in range(31)])
    stops = []
    for i, d in enumerate((0.0, 1000.0, 2000.0, 3000.0)):
        lat, lon, _ = line.point_at(d)
        at = 8 * 3600 + round(d * 0.12)
        stops.append(PlannedStop(i, i + 1, f"S{i}", f"Stop {i}", lat, lon, d, at, at))
    origin = service_day_origin(DAY, TZ)
    plan = TripPlan("T1", "R1", "1", "Town", None, DAY, origin, line, tuple(stops))
    tracker = JourneyTracker(plan, now=plan.first_departure_t)
    for i in range(140):
        tracker.update(
            plan.first_departure_t + LATE + i,
            *offset_m(*START, 0.0, i / 0.12),
            speed=1 / 0.12,
            track=90.0,
            doors_open=False,
        )
    return plan, tracker


def slow_model(seg_s: float = 300.0) -> PredictionModel:
    """Learned: every segment takes `seg_s` at any time of a weekday; no dwell."""
    pairs = [("S0", "S1"), ("S1", "S2"), ("S2", "S3")]
    buckets = (*range(48), ALL_DAY)
    return PredictionModel(
        tz=TZ,
        segments=[SegmentTime(a, b, 0, k, seg_s, 30.0, 9) for a, b in pairs for k in buckets],
        dwells=[DwellTime(f"S{i}", 0, k, 0.0, 0.0, 9) for i in range(4) for k in buckets],
    )


def test_with_a_model_the_expected_times_are_the_predicted_ones() -> None:
    plan, tracker = plan_and_tracker()
    state = tracker.state
    assert state.stop_id == "S2" and not state.at_stop
    progress = (state.dist_m - 1000.0) / 1000.0  # type: ignore[operator]
    got = with_predictions(state, plan, ModelTables(slow_model()))
    s2, s3 = got.upcoming
    assert s2.expected_t == pytest.approx(state.t + 300.0 * (1 - progress))
    assert s3.expected_t == pytest.approx(s2.expected_t + 300.0)
    assert [c.scheduled_t for c in got.upcoming] == [c.scheduled_t for c in state.upcoming]
    for call in state.upcoming:  # the tracker's own: the timetable + the delay
        assert call.expected_t - call.scheduled_t == pytest.approx(LATE, abs=2.0)


def test_the_runtime_shows_the_model_once_central_sent_one_and_the_timetable_without() -> None:
    _, tracker = plan_and_tracker()
    runtime = JourneyRuntime(Feed(routes={}, stops={}, trips={}, shapes={}, stop_times={}))
    runtime.tracker = tracker
    before = runtime.stops_ahead()
    assert before is not None
    runtime.set_model(slow_model())
    ahead, state = runtime.stops_ahead(), runtime.state
    assert ahead is not None and state is not None
    assert [s.expected for s in ahead] == [c.expected_t for c in state.upcoming]
    assert ahead[1].expected == pytest.approx(before[1].expected + 2 * 180.0, abs=60.0)
    runtime.set_model(PredictionModel(tz=TZ))  # an empty model: as none
    assert runtime.stops_ahead() == before
    runtime.set_model(None)
    assert runtime.stops_ahead() == before
