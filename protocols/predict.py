"""Arrival predictions for every stop ahead: one pure function that central and the bus share.

The model (`PredictionModel`) is what central learned from the journey events it holds: the
travel time of each segment (one stop to the next) and the dwell at each stop, per time-of-day
bucket (`bucket_s`, local time of `tz`) and day type (weekday / weekend), as a median with a
robust spread and a count. Central builds it (central/predictions/), publishes the part a bus
needs, and both call `predict` with the trip's remaining stops and the bus's live state.

How a prediction is made (the TheTransitClock idea, kept small): walk the stops ahead from
now, adding for each segment the learned travel time of the bucket the bus will be in when it
drives it (so a rush hour ahead is seen coming, and one that ends lets a late bus recover),
then the learned dwell at the stop. Between the centres of two buckets the value is
interpolated; a bucket with fewer than `min_n` observations falls back to the segment's whole
day-type figure, then to the timetable's own scheduled segment time. The uncertainty adds the
spreads of the steps as independent variances. Times never go backwards, never before now,
and a trip that has not left its first stop leaves no earlier than scheduled.

Pure: no clock, no I/O (zoneinfo reads the time zone database once per zone).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

__all__ = [
    "ALL_DAY",
    "MODEL_VERSION",
    "DwellTime",
    "LiveState",
    "ModelTables",
    "PredictionModel",
    "ScheduledStop",
    "SegmentTime",
    "StopPrediction",
    "bucket_of",
    "predict",
]

MODEL_VERSION = 1
ALL_DAY = -1  # the bucket of a segment's or stop's figure over the whole day type
WEEKDAY, WEEKEND = 0, 1
_FALLBACK_SPREAD = 0.25  # the timetable's segment time is this uncertain (share of it) ...
_FALLBACK_SPREAD_S = 15.0  # ... plus this
_MAX_STEP_S = 6 * 3600.0  # no segment or dwell is believed longer than this

Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=86_400.0)]
SmallCount = Annotated[int, msgspec.Meta(ge=0, le=2**31)]
Bucket = Annotated[int, msgspec.Meta(ge=-1, le=1440)]
DayType = Annotated[int, msgspec.Meta(ge=0, le=1)]
StopId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class SegmentTime(msgspec.Struct, frozen=True, array_like=True):
    """Travel time from leaving `from_stop` to reaching `to_stop` in one bucket."""

    from_stop: StopId
    to_stop: StopId
    day: DayType
    bucket: Bucket
    median_s: Seconds
    spread_s: Seconds
    n: SmallCount


class DwellTime(msgspec.Struct, frozen=True, array_like=True):
    """Time standing at `stop` (arrived to departed) in one bucket."""

    stop: StopId
    day: DayType
    bucket: Bucket
    median_s: Seconds
    spread_s: Seconds
    n: SmallCount


class PredictionModel(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The learned tables, as central publishes them (a bus gets its routes' part)."""

    v: int = MODEL_VERSION
    built: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0  # unix time central learned it
    tz: Annotated[str, msgspec.Meta(max_length=64)] = "UTC"  # the buckets' local time
    bucket_s: Annotated[int, msgspec.Meta(ge=300, le=86_400)] = 1800
    min_n: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    segments: list[SegmentTime] = msgspec.field(default_factory=list)
    dwells: list[DwellTime] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ScheduledStop:
    """One call of the trip, as the timetable has it (unix seconds)."""

    stop_id: str
    sequence: int
    arrival_t: float
    departure_t: float


@dataclass(frozen=True, slots=True)
class LiveState:
    """Where the bus is on the trip at `now`.

    `index` is the position in the stop list of the stop the bus stands at (`at_stop`) or
    drives to next; 0 and not at a stop: the trip has not begun. `since_t`: when it arrived
    at that stop (at_stop) or left the stop before it (driving). `progress`: the share of the
    segment to `index` already driven (0..1), when the bus knows where it is on its path.
    """

    now: float
    index: int
    at_stop: bool = False
    since_t: float | None = None
    progress: float | None = None


@dataclass(frozen=True, slots=True)
class StopPrediction:
    stop_id: str
    sequence: int
    arrival_t: float
    departure_t: float
    uncertainty_s: float  # one standard deviation, seconds


@functools.lru_cache(maxsize=16)
def _zone(tz: str) -> dt.tzinfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def bucket_of(t: float, tz: str, bucket_s: int) -> tuple[int, float]:
    """(day type, position in buckets): local seconds of day / bucket_s, e.g. 16.5 = the
    middle of bucket 16. Weekday 0 (Mon-Fri), weekend 1."""
    local = dt.datetime.fromtimestamp(t, _zone(tz))
    day = WEEKEND if local.weekday() >= 5 else WEEKDAY
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return day, seconds / bucket_s


Stat = tuple[float, float, int]  # median, spread, n


class ModelTables:
    """A `PredictionModel` indexed for lookups (build once, use for many predictions)."""

    def __init__(self, model: PredictionModel) -> None:
        self.model = model
        self._seg: dict[tuple[str | int, ...], Stat] = {
            (s.from_stop, s.to_stop, s.day, s.bucket): (s.median_s, s.spread_s, s.n)
            for s in model.segments
        }
        self._dwell: dict[tuple[str | int, ...], Stat] = {
            (d.stop, d.day, d.bucket): (d.median_s, d.spread_s, d.n) for d in model.dwells
        }

    def segment(self, a: str, b: str, t: float) -> tuple[float, float] | None:
        """(median, spread) of the travel time a -> b when leaving at `t`; None: not known."""
        return self._lookup(self._seg, (a, b), t)

    def dwell(self, stop: str, t: float) -> tuple[float, float] | None:
        """(median, spread) of the dwell at `stop` when arriving at `t`; None: not known."""
        return self._lookup(self._dwell, (stop,), t)

    def _lookup(
        self, table: Mapping[tuple[str | int, ...], Stat], key: tuple[str, ...], t: float
    ) -> tuple[float, float] | None:
        m = self.model
        day, pos = bucket_of(t, m.tz, m.bucket_s)
        whole = table.get((*key, day, ALL_DAY))
        fallback = whole if whole is not None and whole[2] >= m.min_n else None
        # Interpolate between the centres of the two nearest buckets.
        x = pos - 0.5
        b0 = math.floor(x)
        w = x - b0
        per_day = math.ceil(86_400 / m.bucket_s)
        lo = self._good(table.get((*key, day, b0 % per_day)))
        hi = self._good(table.get((*key, day, (b0 + 1) % per_day)))
        lo, hi = lo or hi or fallback, hi or lo or fallback
        if lo is None or hi is None:
            return None
        return (1 - w) * lo[0] + w * hi[0], (1 - w) * lo[1] + w * hi[1]

    def _good(self, stat: Stat | None) -> Stat | None:
        return stat if stat is not None and stat[2] >= self.model.min_n else None


def _step(value: float) -> float:
    return min(max(0.0, value), _MAX_STEP_S) if math.isfinite(value) else 0.0


def _fallback(scheduled_s: float) -> tuple[float, float]:
    s = _step(scheduled_s)
    return s, _FALLBACK_SPREAD * s + _FALLBACK_SPREAD_S


def predict(
    stops: Sequence[ScheduledStop], live: LiveState, tables: ModelTables | None
) -> list[StopPrediction]:
    """Predicted arrival (and departure) at `stops[live.index:]`, in order, monotonic, none
    before `live.now`; with `tables` None, every step is the timetable's (a bus that has the
    schedule but no model yet)."""
    if not stops or live.index >= len(stops):
        return []
    now = live.now
    i = max(0, live.index)

    def seg(k: int, t: float) -> tuple[float, float]:
        a, b = stops[k - 1], stops[k]
        got = tables.segment(a.stop_id, b.stop_id, t) if tables else None
        return got if got is not None else _fallback(b.arrival_t - a.departure_t)

    def dwell(k: int, t: float) -> tuple[float, float]:
        got = tables.dwell(stops[k].stop_id, t) if tables else None
        if got is not None:
            return got
        return _fallback(stops[k].departure_t - stops[k].arrival_t)

    out: list[StopPrediction] = []
    var = 0.0
    if live.at_stop or i == 0:
        arrival = now
    else:  # driving to stop i
        median, spread = seg(i, now)
        p = live.progress
        if p is None or not math.isfinite(p):
            if live.since_t is not None and median > 0:
                p = min(0.9, max(0.0, (now - live.since_t) / median))
            else:
                p = 0.0
        p = min(1.0, max(0.0, p))
        arrival = now + _step(median * (1.0 - p))
        var += (spread * math.sqrt(1.0 - p)) ** 2
    departure = arrival
    for k in range(i, len(stops)):
        if k > i:
            median, spread = seg(k, departure)
            arrival = departure + _step(median)
            var += spread**2
        uncertainty = math.sqrt(var)
        if k == len(stops) - 1:
            departure = arrival
        else:
            median, spread = dwell(k, arrival)
            if k == i and live.at_stop and live.since_t is not None:
                median = max(0.0, median - max(0.0, now - live.since_t))
            departure = arrival + _step(median)
            var += spread**2
            if k == 0:  # a trip leaves its first stop no earlier than scheduled
                departure = max(departure, stops[0].departure_t)
        out.append(
            StopPrediction(stops[k].stop_id, stops[k].sequence, arrival, departure, uncertainty)
        )
    return out
