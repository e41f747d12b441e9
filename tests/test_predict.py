"""The arrival predictor (protocols/predict.py): what central and the bus both run."""

from __future__ import annotations

import datetime as dt
import itertools

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.predict import (
    ALL_DAY,
    DwellTime,
    LiveState,
    ModelTables,
    PredictionModel,
    ScheduledStop,
    SegmentTime,
    bucket_of,
    predict,
)

TZ = "Europe/Berlin"
# Monday 2024-03-04 in Berlin (UTC+1): 07:00 local
MONDAY_7 = dt.datetime(2024, 3, 4, 7, 0, tzinfo=dt.UTC).timestamp() - 3600 + 0.0
STOPS = [f"s{i}" for i in range(6)]


def schedule(start: float, gaps: list[float], dwell: float = 0.0) -> list[ScheduledStop]:
    out, t = [], start
    for i, sid in enumerate(STOPS[: len(gaps) + 1]):
        if i:
            t += gaps[i - 1]
        out.append(ScheduledStop(sid, i + 1, t, t + dwell))
        t += dwell
    return out


def model(seg_s: float, dwell_s: float, *, buckets: range = range(48), n: int = 10) -> ModelTables:
    segments = [
        SegmentTime(a, b, 0, k, seg_s, 20.0, n)
        for a, b in itertools.pairwise(STOPS)
        for k in (*buckets, ALL_DAY)
    ]
    dwells = [DwellTime(s, 0, k, dwell_s, 5.0, n) for s in STOPS for k in (*buckets, ALL_DAY)]
    return ModelTables(PredictionModel(tz=TZ, segments=segments, dwells=dwells))


def test_the_bucket_is_the_local_time_of_day_and_the_day_type() -> None:
    assert bucket_of(MONDAY_7, TZ, 1800) == (0, 14.0)
    assert bucket_of(MONDAY_7 + 5 * 86400, TZ, 1800) == (1, 14.0)  # Saturday


def test_a_bus_driving_is_predicted_with_the_learned_times_not_the_timetable() -> None:
    stops = schedule(MONDAY_7, [60, 60, 60, 60])
    live = LiveState(MONDAY_7 + 100, 2, since_t=MONDAY_7 + 70, progress=0.5)
    got = predict(stops, live, model(200.0, 30.0))
    assert [p.stop_id for p in got] == ["s2", "s3", "s4"]
    assert got[0].arrival_t == MONDAY_7 + 100 + 100  # half of the 200 s segment is left
    assert got[1].arrival_t == got[0].arrival_t + 30 + 200
    assert got[2].departure_t == got[2].arrival_t  # the last stop: no dwell
    assert got[0].uncertainty_s < got[1].uncertainty_s < got[2].uncertainty_s


def test_a_bus_ahead_of_schedule_is_predicted_early() -> None:
    stops = schedule(MONDAY_7, [300, 300, 300])
    live = LiveState(MONDAY_7 + 60, 1, since_t=MONDAY_7, progress=0.9)
    got = predict(stops, live, model(120.0, 0.0))
    assert all(p.arrival_t < s.arrival_t for p, s in zip(got, stops[1:], strict=True))


def test_a_trip_not_yet_begun_leaves_its_first_stop_as_scheduled() -> None:
    stops = schedule(MONDAY_7 + 600, [100, 100])
    got = predict(stops, LiveState(MONDAY_7, 0), model(100.0, 0.0))
    assert got[0].departure_t == stops[0].departure_t
    assert got[1].arrival_t == stops[0].departure_t + 100
    assert got[0].arrival_t >= MONDAY_7


def test_a_bus_at_its_last_stop_has_one_prediction_and_after_it_none() -> None:
    stops = schedule(MONDAY_7, [100, 100])
    got = predict(stops, LiveState(MONDAY_7 + 500, 2, at_stop=True), model(100.0, 10.0))
    assert [(p.stop_id, p.arrival_t, p.departure_t) for p in got] == [
        ("s2", MONDAY_7 + 500, MONDAY_7 + 500)
    ]
    assert predict(stops, LiveState(MONDAY_7 + 500, 3), model(100.0, 10.0)) == []


def test_without_history_the_timetable_steps_are_used() -> None:
    stops = schedule(MONDAY_7, [100, 200, 300], dwell=20.0)
    live = LiveState(MONDAY_7 + 400, 1, since_t=MONDAY_7 + 400, progress=0.0)
    for tables in (None, model(999.0, 999.0, buckets=range(0), n=1)):
        got = predict(stops, live, tables)
        assert [p.arrival_t for p in got] == [
            MONDAY_7 + 500,
            MONDAY_7 + 500 + 20 + 200,
            MONDAY_7 + 500 + 20 + 200 + 20 + 300,
        ]


def test_a_thin_bucket_falls_back_to_the_whole_day_and_neighbours_interpolate() -> None:
    stops = schedule(MONDAY_7, [100])
    thin = model(500.0, 0.0, buckets=range(14, 15), n=2)  # bucket 14 and the day: too few
    got = predict(stops, LiveState(MONDAY_7, 1, progress=0.0), thin)
    assert got[0].arrival_t == MONDAY_7 + 100  # the timetable's
    segs = [
        SegmentTime("s0", "s1", 0, 13, 100.0, 0.0, 5),
        SegmentTime("s0", "s1", 0, 14, 200.0, 0.0, 5),
    ]
    tables = ModelTables(PredictionModel(tz=TZ, segments=segs))
    live = LiveState(MONDAY_7 - 900, 1, progress=0.0)  # 06:45: between the centres 06:45..07:15
    assert predict(stops, live, tables)[0].arrival_t == live.now + 100.0
    live = LiveState(MONDAY_7, 1, progress=0.0)  # 07:00: half way
    assert predict(stops, live, tables)[0].arrival_t == live.now + 150.0


def test_the_model_travels_as_json_and_refuses_nonsense() -> None:
    tables = model(100.0, 10.0, buckets=range(2))
    raw = msgspec.json.encode(tables.model)
    assert msgspec.json.decode(raw, type=PredictionModel) == tables.model
    bad = raw.replace(b'"s0","s1",0,0,100.0', b'"s0","s1",0,0,-100.0')
    assert bad != raw
    try:
        msgspec.json.decode(bad, type=PredictionModel)
    except msgspec.ValidationError:
        pass
    else:
        raise AssertionError("a negative travel time was accepted")


finite = st.floats(min_value=0.0, max_value=4000.0)


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=-500.0, max_value=4000.0), min_size=1, max_size=5),
    dwell=st.floats(min_value=-60.0, max_value=600.0),
    seg_s=finite,
    dwell_s=finite,
    offset=st.floats(min_value=-7200.0, max_value=7200.0),
    index=st.integers(min_value=0, max_value=6),
    at_stop=st.booleans(),
    since=st.one_of(st.none(), st.floats(min_value=-9000.0, max_value=9000.0)),
    progress=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    with_model=st.booleans(),
)
def test_predictions_are_ordered_monotonic_never_before_now_with_an_uncertainty(
    gaps: list[float],
    dwell: float,
    seg_s: float,
    dwell_s: float,
    offset: float,
    index: int,
    at_stop: bool,
    since: float | None,
    progress: float | None,
    with_model: bool,
) -> None:
    stops = schedule(MONDAY_7, gaps, dwell)
    now = MONDAY_7 + offset
    live = LiveState(now, index, at_stop, None if since is None else now + since, progress)
    got = predict(stops, live, model(seg_s, dwell_s) if with_model else None)
    assert len(got) == max(0, len(stops) - index)
    assert [p.sequence for p in got] == [s.sequence for s in stops[index:]]
    last = now
    for p in got:
        assert last <= p.arrival_t <= p.departure_t
        assert p.uncertainty_s >= 0.0
        last = p.departure_t
