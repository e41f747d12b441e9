"""Checking stop_times.txt, the big file of a feed (millions of rows), as a stream.

Rows are read one by one and checked against the trips and stops already read; each trip's
calls are then checked together (sequence order, times that never go backwards, times on the
first and last call) when the next trip starts, and yielded as rows ready to store. Untimed
intermediate calls (allowed by GTFS for non-timepoints) get times interpolated by straight-line
distance between their timed neighbours, as `protocols.gtfs` does.

That needs each trip's rows to come together, as they do in nearly every published feed. When
a trip's rows come back after another trip's, `rows()` raises `Unsorted`; the importer then
replays the file grouped by trip (`central/gtfs_import.py`) through a fresh reader. Pure.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Final

from protocols.geo import haversine_m
from protocols.gtfs.table import Report, Table, TimeParser, is_count

__all__ = ["STOP_TIME_COLUMNS", "StopTimeReader", "StopTimeRow", "Unsorted"]

STOP_TIME_COLUMNS = ("trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence")

# trip_id, stop_sequence, stop_id, arrival_s, departure_s, shape_dist_traveled
StopTimeRow = tuple[str, int, str, int, int, float | None]
# One call while its trip is read: sequence, line, stop_id, arrival, departure, shape_dist.
_Call = tuple[int, int, str, int | None, int | None, float | None]

_NEW: Final = -1  # marks a time value not seen before (real times are never negative)

# Faster than this between two timed stops is worth a warning (a wrong time or stop); a
# minute is added to the time allowed, since many feeds round their times to the minute.
FAST_TRAVEL_KMH = 150.0


class Unsorted(Exception):  # a signal to the importer, not a ProtocolError
    """A trip's rows are not together in stop_times.txt: read the file again, grouped."""

    def __init__(self, trip_id: str, line: int) -> None:
        super().__init__(f"stop_times.txt line {line}: trip {trip_id!r} seen before")
        self.trip_id = trip_id
        self.line = line


class StopTimeReader:
    """Checks stop times against `trips` and `stops` and yields them trip by trip.

    `stops` maps a stop_id to its position, or to None for a stop that a vehicle cannot call
    at (a station, an entrance). After `rows()` is exhausted: `count`, `trips_seen` (trips
    with at least one stop time) and `stops_used` are filled.
    """

    def __init__(
        self,
        table: Table,
        report: Report,
        trips: Collection[str],
        stops: Mapping[str, tuple[float, float] | None],
    ) -> None:
        self.name = table.name
        self.report = report
        self.trips = trips
        self.stops = stops
        self._i = [table.require(c) for c in STOP_TIME_COLUMNS]
        self._i_dist = table.index("shape_dist_traveled")
        self._time = TimeParser()
        self._times: dict[str, int | None] = {"": None}  # seen values; "" is an untimed call
        self._cumulative_of: dict[tuple[str, ...], list[float]] = {}
        self.count = 0
        self.trips_seen: set[str] = set()
        self.stops_used: set[str] = set()

    def rows(self, source: Iterable[tuple[int, list[str]]]) -> Iterator[StopTimeRow]:
        """Yield checked rows of `source` (the table, or a replay grouped by trip)."""
        report, name = self.report, self.name
        trips, done = self.trips, self.trips_seen
        stop_at, time_of = self.stops.get, self._times.get
        i_trip, i_arr, i_dep, i_stop, i_seq = self._i
        i_dist = self._i_dist
        current: str | None = None
        calls: list[_Call] = []
        broken = False  # the current trip had a bad row: skip its whole-trip checks
        for line, row in source:
            tid = row[i_trip]
            if tid != current:
                if current is not None and not broken:
                    yield from self._trip(current, calls)
                if tid in done:
                    raise Unsorted(tid, line)
                current, calls, broken = tid, [], False
                done.add(tid)
                if tid not in trips:
                    what = "required value is empty" if not tid else f"unknown trip {tid!r}"
                    report.error("unknown_trip", name, line, "trip_id", what)
                    broken = True
            elif broken:
                continue
            # The common case in a few lookups; anything unusual goes to `_check_row`.
            arr, dep, raw_seq = time_of(row[i_arr], _NEW), time_of(row[i_dep], _NEW), row[i_seq]
            if (
                arr is _NEW
                or dep is _NEW
                or stop_at(row[i_stop]) is None
                or not (raw_seq.isdigit() and raw_seq.isascii() and len(raw_seq) < 10)
            ):
                times = self._check_row(line, row)
                if times is None:
                    broken = True
                    continue
                arr, dep = times
            dist = None
            if i_dist is not None and row[i_dist]:
                dist = self._distance_value(line, row[i_dist])
                if dist is None:
                    broken = True
                    continue
            calls.append((int(raw_seq), line, row[i_stop], arr, dep, dist))
        if current is not None and not broken:
            yield from self._trip(current, calls)

    def _check_row(self, line: int, row: list[str]) -> tuple[int | None, int | None] | None:
        """Report what is wrong with a row; None if anything is, else its parsed times."""
        report, name = self.report, self.name
        _, i_arr, i_dep, i_stop, i_seq = self._i
        sid = row[i_stop]
        if sid not in self.stops:
            what = "required value is empty" if not sid else f"unknown stop {sid!r}"
            report.error("unknown_stop", name, line, "stop_id", what)
            return None
        if self.stops[sid] is None:
            report.error("bad_location_type", name, line, "stop_id", f"{sid!r}: not a stop")
            return None
        if not is_count(row[i_seq]):
            report.error(
                "bad_value", name, line, "stop_sequence", f"not an integer: {row[i_seq]!r}"
            )
            return None
        times: list[int | None] = []
        for field, i in (("arrival_time", i_arr), ("departure_time", i_dep)):
            try:
                times.append(self._parse_time(row[i]) if row[i] else None)
            except ValueError as exc:
                report.error("bad_value", name, line, field, str(exc))
                return None
        return times[0], times[1]

    def _distance_value(self, line: int, raw: str) -> float | None:
        try:
            dist = float(raw)
        except ValueError:
            dist = -1.0
        if not dist >= 0.0:  # also refuses nan
            self.report.error(
                "bad_value", self.name, line, "shape_dist_traveled", f"not a distance: {raw!r}"
            )
            return None
        return dist

    def _parse_time(self, value: str) -> int:
        seconds = self._time(value)
        if len(self._times) < 200_000:  # a feed has at most ~100,000 distinct times
            self._times[value] = seconds
        return seconds

    def _trip(self, tid: str, calls: list[_Call]) -> Iterator[StopTimeRow]:
        """Check one trip's calls together, fill untimed ones, yield them in sequence order."""
        report, name = self.report, self.name
        calls.sort()  # nearly always in order already: linear
        if len(calls) == 1:
            report.warn("single_stop_time", name, calls[0][1], "trip_id", f"{tid}: one call")
        arr = [c[3] if c[3] is not None else c[4] for c in calls]
        dep = [c[4] if c[4] is not None else c[3] for c in calls]
        for end in (0, -1):
            if arr[end] is None:
                what = "first and last stop need times"
                report.error("missing_value", name, calls[end][1], "arrival_time", what)
                return
        cum = self._cumulative(calls)
        if None in arr:
            _interpolate(arr, dep, cum)
        fast_mps = FAST_TRAVEL_KMH / 3.6
        prev_seq, prev_dep, prev_cum = -1, -1, 0.0
        prev_dist: float | None = None
        out: list[StopTimeRow] = []
        for c, a_s, d_s, x in zip(calls, arr, dep, cum, strict=True):
            assert a_s is not None and d_s is not None  # filled above
            line, dist = c[1], c[5]
            if c[0] == prev_seq:
                report.error("duplicate_key", name, line, "stop_sequence", f"{c[0]} repeated")
                return
            if d_s < a_s:
                report.error("time_travel", name, line, "departure_time", "before arrival_time")
                return
            if prev_seq >= 0:
                if a_s < prev_dep:
                    what = "before the previous departure"
                    report.error("time_travel", name, line, "arrival_time", what)
                    return
                if x - prev_cum > (a_s - prev_dep + 60) * fast_mps:
                    what = f"{tid}: faster than {FAST_TRAVEL_KMH:g} km/h from the previous stop"
                    report.warn("fast_travel", name, line, "arrival_time", what)
            if dist is not None:
                if prev_dist is not None and dist < prev_dist:
                    what = "smaller than at the previous stop"
                    report.error("decreasing_distance", name, line, "shape_dist_traveled", what)
                    return
                prev_dist = dist
            prev_seq, prev_dep, prev_cum = c[0], d_s, x
            out.append((tid, c[0], c[2], a_s, d_s, dist))
        self.count += len(out)
        self.stops_used.update(c[2] for c in calls)
        yield from out

    def _cumulative(self, calls: list[_Call]) -> list[float]:
        """Straight-line distance from the first call to each call, metres.

        Cached per stop pattern: a feed's trips run the same few patterns many times.
        """
        key = tuple(c[2] for c in calls)
        cum = self._cumulative_of.get(key)
        if cum is None:
            cum = [0.0]
            for a, b in itertools.pairwise(key):
                pa, pb = self.stops[a], self.stops[b]
                assert pa is not None and pb is not None  # checked when read
                cum.append(cum[-1] + haversine_m(pa[0], pa[1], pb[0], pb[1]))
            if len(self._cumulative_of) < 100_000:
                self._cumulative_of[key] = cum
        return cum


def _interpolate(arr: list[int | None], dep: list[int | None], cum: list[float]) -> None:
    """Give untimed calls times shared out by distance between their timed neighbours."""
    last = 0
    for i in range(1, len(arr)):
        if arr[i] is None:
            continue
        if last < i - 1:
            t0, t1 = dep[last], arr[i]
            assert t0 is not None and t1 is not None  # timed by construction
            span = cum[i] - cum[last]
            for j in range(last + 1, i):
                f = (cum[j] - cum[last]) / span if span > 0 else (j - last) / (i - last)
                arr[j] = dep[j] = round(t0 + f * (t1 - t0))
        last = i
