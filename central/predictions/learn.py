"""Learn the prediction model from history: travel time per segment and dwell per stop, by
time-of-day bucket and day type, as robust statistics.

From the stop events of each run of a trip (a bus's `arrived` / `departed` / `passed` with the
stop's index, central/store/predictions.py): a segment's time is from leaving stop k-1 to
reaching stop k (consecutive indices of one run only: a gap in the events gives no segment),
bucketed by when the bus left; a dwell is from arriving to leaving a stop, 0 for a stop passed
without halting (the mean passenger wait includes them), bucketed by when it arrived.

Each (segment or stop, day type, bucket) keeps its median (the figure that minimises the
absolute error the bench measures), a robust spread (1.4826 x the median absolute deviation,
the standard deviation for normal data) and its count; `ALL_DAY` rows hold the same over the
whole day type, for buckets with too few. Values beyond plausibility (a segment over 2 h, a
dwell over 30 min: a bus parked with its trip open) are dropped before the statistics.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from central.store.db import CentralStore
from central.store.predictions import Passage, passages
from protocols.predict import ALL_DAY, DwellTime, PredictionModel, SegmentTime, bucket_of

__all__ = ["build_model", "learn", "model_for_stops"]

MAX_SEGMENT_S = 2 * 3600.0
MAX_DWELL_S = 30 * 60.0
RUN_GAP_S = 3 * 3600.0  # events of one bus and trip further apart start another run
DEFAULT_DAYS = 28


def learn(
    store: CentralStore,
    now: float,
    *,
    tz: str,
    days: int = DEFAULT_DAYS,
    bucket_s: int = 1800,
    min_n: int = 3,
) -> PredictionModel:
    """The model from the last `days` days of stop events in `store` (read as a stream)."""
    events = passages(store, now - days * 86_400.0, now)
    try:
        return build_model(events, tz=tz, bucket_s=bucket_s, min_n=min_n, built=now)
    finally:
        events.close()


def _runs(passages: Iterable[Passage]) -> Iterable[list[Passage]]:
    """Split per-bus, time-ordered events into runs of one trip."""
    run: list[Passage] = []
    for p in passages:
        if run:
            last = run[-1]
            if (
                p.bus != last.bus
                or p.trip != last.trip
                or p.stop_index < last.stop_index
                or p.t - last.t > RUN_GAP_S
            ):
                yield run
                run = []
        run.append(p)
    if run:
        yield run


def build_model(
    passages: Iterable[Passage], *, tz: str, bucket_s: int = 1800, min_n: int = 3, built: float
) -> PredictionModel:
    """The tables from stop events ordered per bus by time (`stop_passages`' order)."""
    seg: dict[tuple[str, str, int, int], list[float]] = defaultdict(list)
    dwell: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for run in _runs(passages):
        arrived: dict[int, float] = {}
        departed: dict[int, float] = {}
        stop: dict[int, str] = {}
        for p in run:
            stop[p.stop_index] = p.stop
            if p.kind in ("arrived", "passed"):
                arrived.setdefault(p.stop_index, p.t)
            if p.kind in ("departed", "passed"):
                departed[p.stop_index] = p.t
        for k, t_arr in arrived.items():
            t_dep = departed.get(k)
            if t_dep is not None and 0.0 <= t_dep - t_arr <= MAX_DWELL_S:
                day, pos = bucket_of(t_arr, tz, bucket_s)
                dwell[(stop[k], day, int(pos))].append(t_dep - t_arr)
            t_left = departed.get(k - 1)
            if t_left is not None and 0.0 < t_arr - t_left <= MAX_SEGMENT_S:
                day, pos = bucket_of(t_left, tz, bucket_s)
                seg[(stop[k - 1], stop[k], day, int(pos))].append(t_arr - t_left)
    segments = [
        SegmentTime(a, b, day, bucket, *_stats(values))
        for (a, b, day, bucket), values in _with_all_day(seg).items()
    ]
    dwells = [
        DwellTime(s, day, bucket, *_stats(values))
        for (s, day, bucket), values in _with_all_day(dwell).items()
    ]
    segments.sort(key=lambda s: (s.from_stop, s.to_stop, s.day, s.bucket))
    dwells.sort(key=lambda d: (d.stop, d.day, d.bucket))
    return PredictionModel(
        built=built, tz=tz, bucket_s=bucket_s, min_n=min_n, segments=segments, dwells=dwells
    )


def _with_all_day(table: Mapping[Any, list[float]]) -> dict[Any, list[float]]:
    out: dict[Any, list[float]] = dict(table)
    for key, values in table.items():
        whole = (*key[:-1], ALL_DAY)
        out.setdefault(whole, []).extend(values)
    return out


def _stats(values: Sequence[float]) -> tuple[float, float, int]:
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return round(median, 1), round(1.4826 * mad, 1), len(values)


def model_for_stops(model: PredictionModel, stops: Iterable[str]) -> PredictionModel:
    """The part of `model` about `stops` (a route's, for its buses)."""
    wanted = set(stops)
    return PredictionModel(
        built=model.built,
        tz=model.tz,
        bucket_s=model.bucket_s,
        min_n=model.min_n,
        segments=[s for s in model.segments if s.from_stop in wanted and s.to_stop in wanted],
        dwells=[d for d in model.dwells if d.stop in wanted],
    )
