"""Reading a GTFS static feed: routes, stops, trips, stop times and shapes.

`parse_feed` is pure: it takes the text of each file and returns a `Feed`. `read_feed` is the
small edge that reads a zip archive or a folder into that mapping. Anything that does not
follow GTFS raises `GtfsError` carrying the file, line and field at fault.

What is read, and how leniently: the four required files (routes, trips, stops, stop_times)
plus shapes.txt, the agency's timezone and the service calendar (calendar.txt and/or
calendar_dates.txt, `protocols.gtfs.calendar`) if present. Intermediate stop times left empty
(allowed by GTFS for non-timepoints) are interpolated by straight-line distance between the
timed neighbours. Central's importer checks whole feeds with `protocols.gtfs.check`.
"""

from __future__ import annotations

import itertools
import lzma
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from protocols.errors import GtfsError
from protocols.geo import Polyline, haversine_m, match_along
from protocols.gtfs.calendar import ServiceCalendar, parse_services
from protocols.gtfs.rows import Rows, parse_time

__all__ = [
    "ARCHIVE_ERRORS",
    "Feed",
    "GtfsError",
    "Route",
    "Stop",
    "StopTime",
    "Trip",
    "demo_trips",
    "parse_feed",
    "parse_time",
    "read_feed",
]

REQUIRED_FILES = ("routes.txt", "trips.txt", "stops.txt", "stop_times.txt")
# What reading a damaged or hostile zip member can raise besides OSError: a corrupt deflate,
# LZMA or bzip2 stream, a truncated file, a method zipfile does not know, a ZIP64 it refuses.
ARCHIVE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
)
OPTIONAL_FILES = ("shapes.txt", "agency.txt", "calendar.txt", "calendar_dates.txt")


@dataclass(frozen=True, slots=True)
class Stop:
    """A place where passengers board (stops.txt)."""

    stop_id: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class StopTime:
    """One call of a trip at a stop; times in seconds from the service day's midnight.

    (Strictly GTFS counts from noon minus 12 h, which differs only on daylight-saving days.)
    """

    stop_id: str
    sequence: int
    arrival_s: int  # may exceed 86,400 for trips running past midnight
    departure_s: int
    shape_dist: float | None  # shape_dist_traveled as given by the feed, units of the feed


@dataclass(frozen=True, slots=True)
class Trip:
    """One journey of a vehicle along a route (trips.txt)."""

    trip_id: str
    route_id: str
    service_id: str
    shape_id: str | None
    headsign: str
    direction_id: int | None
    block_id: str | None


@dataclass(frozen=True, slots=True)
class Route:
    """A line as passengers know it (routes.txt)."""

    route_id: str
    short_name: str
    long_name: str
    type: int
    color: str | None = None  # hex RRGGBB without '#', when the feed gives one


class Feed:
    """A parsed GTFS feed: what the simulators, the agent and the importer need."""

    def __init__(
        self,
        *,
        routes: dict[str, Route],
        stops: dict[str, Stop],
        trips: dict[str, Trip],
        shapes: dict[str, list[tuple[float, float]]],
        stop_times: dict[str, list[StopTime]],
        timezone: str | None = None,
        services: ServiceCalendar | None = None,
    ) -> None:
        self.routes = routes
        self.stops = stops
        self.trips = trips
        self.timezone = timezone
        self.services = services  # which service_ids run on a day; None: no calendar files
        self._shapes = shapes
        self._stop_times = stop_times
        # Trips of one pattern share shape and stops: match them once.
        self._matched: dict[tuple[str | None, tuple[str, ...]], _Match] = {}

    @property
    def shape_ids(self) -> frozenset[str]:
        """Every shape_id present in shapes.txt."""
        return frozenset(self._shapes)

    def shape(self, shape_id: str) -> list[tuple[float, float]]:
        """The (lat, lon) points of a shape in sequence order; KeyError if unknown."""
        return list(self._shapes[shape_id])

    def stop_times(self, trip_id: str) -> list[StopTime]:
        """The calls of a trip in stop_sequence order; KeyError if the trip is unknown."""
        if trip_id not in self.trips:
            raise KeyError(trip_id)
        return list(self._stop_times.get(trip_id, ()))

    def trip_path(self, trip_id: str) -> tuple[Polyline, list[tuple[Stop, float]]]:
        """The line a trip drives and each of its stops with its distance along that line.

        The line is the trip's shape, or straight stop-to-stop segments if it has none.
        Distances never decrease from one stop to the next, even on looping shapes.
        """
        m = self._match(trip_id)
        return m.line, [(stop, d) for stop, d, _ in m.stops]

    def stop_offsets(self, trip_id: str) -> list[float]:
        """How far (m) each stop of the trip lies from its matched point on the line."""
        return [off for _, _, off in self._match(trip_id).stops]

    def _match(self, trip_id: str) -> _Match:
        trip = self.trips[trip_id]
        stops = [self.stops[st.stop_id] for st in self.stop_times(trip_id)]
        shape = self._shapes.get(trip.shape_id or "")
        key = (
            trip.shape_id if shape and len(shape) >= 2 else None,
            tuple(s.stop_id for s in stops),
        )
        cached = self._matched.get(key)
        if cached is not None:
            return cached
        if key[0] is not None and shape is not None:
            line = Polyline(shape)
            fits = match_along(line, [(s.lat, s.lon) for s in stops])
        elif stops:
            line = Polyline([(s.lat, s.lon) for s in stops])
            fits = [(line.cum_m[i], 0.0) for i in range(len(stops))]
        else:
            raise KeyError(f"trip {trip_id} has no stop times")
        match = _Match(line, [(s, d, off) for s, (d, off) in zip(stops, fits, strict=True)])
        self._matched[key] = match
        return match


@dataclass(frozen=True, slots=True)
class _Match:
    line: Polyline
    stops: list[tuple[Stop, float, float]]  # stop, distance along, offset from the line


def parse_feed(files: Mapping[str, str]) -> Feed:
    """Build a `Feed` from the text of each GTFS file, keyed by file name ('stops.txt'...)."""
    for name in REQUIRED_FILES:
        if name not in files:
            raise GtfsError(f"the feed has no {name}", file=name)
    routes = _parse_routes(files["routes.txt"])
    stops = _parse_stops(files["stops.txt"])
    shapes = _parse_shapes(files["shapes.txt"]) if "shapes.txt" in files else None
    trips = _parse_trips(files["trips.txt"], routes, shapes)
    stop_times = _parse_stop_times(files["stop_times.txt"], trips, stops)
    timezone = None
    if "agency.txt" in files:
        for _, row in Rows("agency.txt", files["agency.txt"], ()):
            timezone = row.get("agency_timezone") or None
            break
    services = None
    if "calendar.txt" in files or "calendar_dates.txt" in files:
        services = parse_services(files.get("calendar.txt"), files.get("calendar_dates.txt"))
    return Feed(
        routes=routes,
        stops=stops,
        trips=trips,
        shapes=shapes or {},
        stop_times=stop_times,
        timezone=timezone,
        services=services,
    )


def _parse_routes(text: str) -> dict[str, Route]:
    rows = Rows("routes.txt", text, ("route_id", "route_type"))
    routes: dict[str, Route] = {}
    for line, row in rows:
        rid = rows.required(line, row, "route_id")
        if rid in routes:
            raise rows.error(line, "route_id", f"duplicate {rid!r}")
        short, long = row.get("route_short_name", ""), row.get("route_long_name", "")
        if not short and not long:
            raise rows.error(line, "route_short_name", "neither short nor long name given")
        color = row.get("route_color") or None
        routes[rid] = Route(rid, short, long, rows.integer(line, row, "route_type"), color)
    return routes


def _parse_stops(text: str) -> dict[str, Stop]:
    rows = Rows("stops.txt", text, ("stop_id", "stop_lat", "stop_lon"))
    stops: dict[str, Stop] = {}
    for line, row in rows:
        sid = rows.required(line, row, "stop_id")
        if sid in stops:
            raise rows.error(line, "stop_id", f"duplicate {sid!r}")
        if row.get("location_type") in ("3", "4") and not row.get("stop_lat"):
            continue  # generic nodes and boarding areas may lack coordinates; no bus stops there
        lat = rows.number(line, row, "stop_lat", -90.0, 90.0)
        lon = rows.number(line, row, "stop_lon", -180.0, 180.0)
        stops[sid] = Stop(sid, row.get("stop_name", ""), lat, lon)
    return stops


def _parse_shapes(text: str) -> dict[str, list[tuple[float, float]]]:
    cols = ("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence")
    rows = Rows("shapes.txt", text, cols)
    raw: dict[str, list[tuple[int, float, float]]] = {}
    for line, row in rows:
        sid = rows.required(line, row, "shape_id")
        lat = rows.number(line, row, "shape_pt_lat", -90.0, 90.0)
        lon = rows.number(line, row, "shape_pt_lon", -180.0, 180.0)
        raw.setdefault(sid, []).append((rows.integer(line, row, "shape_pt_sequence"), lat, lon))
    return {sid: [(la, lo) for _, la, lo in sorted(pts)] for sid, pts in raw.items()}


def _parse_trips(
    text: str, routes: Mapping[str, Route], shapes: Mapping[str, object] | None
) -> dict[str, Trip]:
    rows = Rows("trips.txt", text, ("route_id", "service_id", "trip_id"))
    trips: dict[str, Trip] = {}
    for line, row in rows:
        tid = rows.required(line, row, "trip_id")
        if tid in trips:
            raise rows.error(line, "trip_id", f"duplicate {tid!r}")
        rid = rows.required(line, row, "route_id")
        if rid not in routes:
            raise rows.error(line, "route_id", f"unknown route {rid!r}")
        shape_id = row.get("shape_id") or None
        # Without shapes.txt a shape_id cannot be checked; the trip then drives stop to stop.
        if shape_id is not None and shapes is not None and shape_id not in shapes:
            raise rows.error(line, "shape_id", f"unknown shape {shape_id!r}")
        direction = row.get("direction_id") or None
        if direction not in (None, "0", "1"):
            raise rows.error(line, "direction_id", f"must be 0 or 1, not {direction!r}")
        trips[tid] = Trip(
            trip_id=tid,
            route_id=rid,
            service_id=rows.required(line, row, "service_id"),
            shape_id=shape_id,
            headsign=row.get("trip_headsign", ""),
            direction_id=None if direction is None else int(direction),
            block_id=row.get("block_id") or None,
        )
    return trips


def _parse_stop_times(
    text: str, trips: Mapping[str, Trip], stops: Mapping[str, Stop]
) -> dict[str, list[StopTime]]:
    cols = ("trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence")
    rows = Rows("stop_times.txt", text, cols)
    # Per trip: (sequence, line, stop_id, arrival or None, departure or None, shape_dist)
    raw: dict[str, list[tuple[int, int, str, int | None, int | None, float | None]]] = {}
    for line, row in rows:
        tid = rows.required(line, row, "trip_id")
        if tid not in trips:
            raise rows.error(line, "trip_id", f"unknown trip {tid!r}")
        sid = rows.required(line, row, "stop_id")
        if sid not in stops:
            raise rows.error(line, "stop_id", f"unknown stop {sid!r}")
        times: list[int | None] = []
        for field in ("arrival_time", "departure_time"):
            value = row.get(field, "")
            try:
                times.append(parse_time(value) if value else None)
            except ValueError as exc:
                raise rows.error(line, field, str(exc)) from None
        dist = None
        if row.get("shape_dist_traveled"):
            dist = rows.number(line, row, "shape_dist_traveled", 0.0, float("inf"))
        seq = rows.integer(line, row, "stop_sequence")
        raw.setdefault(tid, []).append((seq, line, sid, times[0], times[1], dist))
    return {tid: _timed_calls(rows, calls, stops) for tid, calls in raw.items()}


def _timed_calls(
    rows: Rows,
    calls: list[tuple[int, int, str, int | None, int | None, float | None]],
    stops: Mapping[str, Stop],
) -> list[StopTime]:
    """Order a trip's calls, check them, and fill untimed intermediate stops."""
    calls.sort()
    for a, b in itertools.pairwise(calls):
        if a[0] == b[0]:
            raise rows.error(b[1], "stop_sequence", f"{b[0]} repeated in the trip")
    arr = [c[3] if c[3] is not None else c[4] for c in calls]
    dep = [c[4] if c[4] is not None else c[3] for c in calls]
    for end in (0, len(calls) - 1):
        if arr[end] is None:
            raise rows.error(calls[end][1], "arrival_time", "first and last stop need times")
    # Cumulative straight-line distance between stops, to share out the untimed gaps.
    cum = [0.0]
    for a, b in itertools.pairwise(calls):
        sa, sb = stops[a[2]], stops[b[2]]
        cum.append(cum[-1] + haversine_m(sa.lat, sa.lon, sb.lat, sb.lon))
    last = 0
    for i in range(1, len(calls)):
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
    out: list[StopTime] = []
    prev_dep = None
    for c, a_s, d_s in zip(calls, arr, dep, strict=True):
        assert a_s is not None and d_s is not None  # filled above
        if d_s < a_s:
            raise rows.error(c[1], "departure_time", "earlier than arrival_time")
        if prev_dep is not None and a_s < prev_dep:
            raise rows.error(c[1], "arrival_time", "earlier than the previous departure")
        prev_dep = d_s
        out.append(StopTime(c[2], c[0], a_s, d_s, c[5]))
    return out


def read_feed(path: str | Path) -> Feed:
    """Read a GTFS feed from a .zip archive or a folder of .txt files."""
    p = Path(path)
    wanted = (*REQUIRED_FILES, *OPTIONAL_FILES)
    files: dict[str, bytes] = {}
    try:
        if p.is_dir():
            files = {n: (p / n).read_bytes() for n in wanted if (p / n).is_file()}
        else:
            with zipfile.ZipFile(p) as zf:
                # Some publishers nest the files in a folder inside the archive.
                by_base = {Path(i.filename).name: i for i in zf.infolist() if not i.is_dir()}
                files = {n: zf.read(by_base[n]) for n in wanted if n in by_base}
    except ARCHIVE_ERRORS as exc:
        raise GtfsError(f"cannot read GTFS feed {p}: {exc}") from exc
    texts: dict[str, str] = {}
    for name, data in files.items():
        try:
            texts[name] = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise GtfsError(f"{name} is not UTF-8: {exc}", file=name) from exc
    return parse_feed(texts)


def demo_trips(
    feed: Feed, n: int, *, min_length_m: float = 2_000.0, max_offset_m: float = 80.0
) -> list[str]:
    """Up to `n` distinct trips for a demo fleet, varied and good to drive.

    One trip per route first (so the fleet covers the network), alternating directions from
    route to route, each from its route's most frequent pattern (shape and stops), at least
    `min_length_m` long and with every stop within `max_offset_m` of its shape. When `n`
    exceeds the routes, further rounds take the next patterns, then more trips of the same
    patterns. Deterministic for a given feed.
    """
    by_pattern: dict[tuple[str, int | None, str | None, tuple[str, ...]], list[str]] = {}
    for tid in sorted(feed.trips):
        trip = feed.trips[tid]
        calls = feed.stop_times(tid)
        if len(calls) < 3:
            continue
        key = (trip.route_id, trip.direction_id, trip.shape_id, tuple(c.stop_id for c in calls))
        by_pattern.setdefault(key, []).append(tid)

    def drivable(trip_id: str) -> bool:
        line, _ = feed.trip_path(trip_id)
        offsets = feed.stop_offsets(trip_id)
        return line.length_m >= min_length_m and max(offsets) <= max_offset_m

    # Per route, its patterns by frequency; within a pattern, trips by departure time from
    # the middle of the day outwards, so a demo does not start with the first night service.
    per_route: dict[str, list[list[str]]] = {}
    for key, tids in sorted(by_pattern.items(), key=lambda kv: (kv[0][0], -len(kv[1]), kv[0])):
        tids.sort(key=lambda t: (abs(feed.stop_times(t)[0].departure_s - 12 * 3600), t))
        per_route.setdefault(key[0], []).append(tids)
    good: dict[str, list[list[str]]] = {}
    for route_id, patterns in per_route.items():
        ok = [p for p in patterns if drivable(p[0])]
        if ok:
            good[route_id] = ok
    # Alternate which direction leads, so neighbouring buses do not all run inbound.
    for i, route_id in enumerate(sorted(good)):
        patterns = good[route_id]
        flipped = [p for p in patterns if feed.trips[p[0]].direction_id == i % 2]
        good[route_id] = flipped + [p for p in patterns if p not in flipped]

    chosen: list[str] = []
    depth = 0  # round r takes the r-th trip of each pattern, pattern order by route
    max_depth = max((len(p) for ps in good.values() for p in ps), default=0)
    while len(chosen) < n and depth < max_depth:
        for pat_index in range(max((len(ps) for ps in good.values()), default=0)):
            for route_id in sorted(good):
                patterns = good[route_id]
                if pat_index < len(patterns) and depth < len(patterns[pat_index]):
                    chosen.append(patterns[pat_index][depth])
                    if len(chosen) == n:
                        return chosen
        depth += 1
    return chosen
