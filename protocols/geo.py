"""Geometry on the WGS-84 sphere at city scale: distances, bearings, polylines along a route.

Distances use the haversine formula on a sphere of the mean Earth radius, which is within
0.5 % of the ellipsoid: plenty for buses, stops and GPS noise. Interpolation and projection
inside one shape segment treat the segment as flat (segments are at most a few hundred
metres long in real feeds).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Sequence

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)

__all__ = [
    "EARTH_RADIUS_M",
    "Polyline",
    "bearing_deg",
    "haversine_m",
    "match_along",
    "offset_m",
    "turn_deg",
]


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from true north, in [0, 360)."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def offset_m(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The point `north_m` north and `east_m` east of (lat, lon); exact enough below ~10 km."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    coslat = math.cos(math.radians(lat))
    # At the poles east/west is undefined; keep the longitude rather than divide by zero.
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * coslat)) if coslat > 1e-12 else 0.0
    lon2 = (lon + dlon + 180.0) % 360.0 - 180.0
    return lat + dlat, lon2


def turn_deg(heading_a: float, heading_b: float) -> float:
    """Signed change of heading from a to b in degrees, in (-180, 180]; positive turns right."""
    d = (heading_b - heading_a) % 360.0
    return d - 360.0 if d > 180.0 else d


class Polyline:
    """An ordered list of (lat, lon) points with cumulative distances along it.

    `point_at(d)` walks a distance along the line; `project(lat, lon)` finds the nearest point.
    Repeated points (zero-length segments, common in GTFS shapes) are allowed.
    """

    __slots__ = ("_headings", "cum_m", "length_m", "points")

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        if not points:
            raise ValueError("a polyline needs at least one point")
        self.points: tuple[tuple[float, float], ...] = tuple(
            (float(lat), float(lon)) for lat, lon in points
        )
        cum = [0.0]
        headings: list[float] = []
        for (la1, lo1), (la2, lo2) in itertools.pairwise(self.points):
            cum.append(cum[-1] + haversine_m(la1, lo1, la2, lo2))
            headings.append(bearing_deg(la1, lo1, la2, lo2))
        self.cum_m: tuple[float, ...] = tuple(cum)
        self.length_m: float = cum[-1]
        self._headings = self._fill_degenerate_headings(headings)

    def _fill_degenerate_headings(self, headings: list[float]) -> tuple[float, ...]:
        # A zero-length segment has no direction of its own: borrow the next real one (or the
        # previous one at the end of the line), so that a bus standing on it keeps a heading.
        real = [self.cum_m[i + 1] - self.cum_m[i] > 1e-6 for i in range(len(headings))]
        out: list[float | None] = [h if r else None for h, r in zip(headings, real, strict=True)]
        nxt: float | None = None
        for i in range(len(out) - 1, -1, -1):
            nxt = out[i] if out[i] is not None else nxt
            out[i] = nxt
        prev = 0.0
        filled: list[float] = []
        for h in out:
            prev = h if h is not None else prev
            filled.append(prev)
        return tuple(filled)

    def __len__(self) -> int:
        return len(self.points)

    def _segment_index(self, dist_m: float) -> int:
        """Index i of the segment [i, i+1] that contains `dist_m` (clamped to the line)."""
        i = bisect_right(self.cum_m, dist_m) - 1
        return max(0, min(i, len(self.points) - 2))

    def point_at(self, dist_m: float) -> tuple[float, float, float]:
        """(lat, lon, heading_deg) at `dist_m` along the line, clamped to its ends."""
        if len(self.points) == 1:
            lat, lon = self.points[0]
            return lat, lon, 0.0
        d = min(max(dist_m, 0.0), self.length_m)
        i = self._segment_index(d)
        seg = self.cum_m[i + 1] - self.cum_m[i]
        f = (d - self.cum_m[i]) / seg if seg > 0 else 0.0
        (la1, lo1), (la2, lo2) = self.points[i], self.points[i + 1]
        return la1 + f * (la2 - la1), lo1 + f * (lo2 - lo1), self._headings[i]

    def heading_at(self, dist_m: float) -> float:
        """Heading of the segment under `dist_m`, degrees."""
        return self.point_at(dist_m)[2]

    def segment_projections(self, lat: float, lon: float) -> list[tuple[float, float]]:
        """For every segment, (distance along the line, offset in metres) of its nearest point.

        Works in a local flat frame centred on the query point: fine at city scale. Callers
        that need more than the single nearest point (monotonic matching of stops along a
        looping shape) pick candidates from this list.
        """
        if len(self.points) == 1:
            la, lo = self.points[0]
            return [(0.0, haversine_m(lat, lon, la, lo))]
        kx = math.cos(math.radians(lat)) * math.pi / 180.0 * EARTH_RADIUS_M
        ky = math.pi / 180.0 * EARTH_RADIUS_M
        xy = [((lo - lon) * kx, (la - lat) * ky) for la, lo in self.points]
        out: list[tuple[float, float]] = []
        for i in range(len(xy) - 1):
            (x1, y1), (x2, y2) = xy[i], xy[i + 1]
            dx, dy = x2 - x1, y2 - y1
            seg2 = dx * dx + dy * dy
            f = 0.0 if seg2 <= 0 else min(1.0, max(0.0, -(x1 * dx + y1 * dy) / seg2))
            px, py = x1 + f * dx, y1 + f * dy
            seg_len = self.cum_m[i + 1] - self.cum_m[i]
            out.append((self.cum_m[i] + f * seg_len, math.hypot(px, py)))
        return out

    def project(
        self, lat: float, lon: float, *, min_dist_m: float = 0.0, max_dist_m: float | None = None
    ) -> tuple[float, float]:
        """(distance along, offset in metres) of the point of the line nearest to (lat, lon).

        `min_dist_m` / `max_dist_m` restrict the search to part of the line, e.g. to keep
        successive projections monotonic on a route that passes a place twice.
        """
        lo = min_dist_m
        hi = self.length_m if max_dist_m is None else max_dist_m
        best: tuple[float, float] | None = None
        for i, (d, off) in enumerate(self.segment_projections(lat, lon)):
            if len(self.points) > 1 and (self.cum_m[i + 1] < lo or self.cum_m[i] > hi):
                continue
            if d < lo or d > hi:
                # The nearest point of this segment lies outside the window: along a segment
                # the distance is convex, so the nearest point inside it is the window's edge.
                d = min(max(d, lo), hi)
                la, lon_, _ = self.point_at(d)
                off = haversine_m(lat, lon, la, lon_)
            if best is None or off < best[1]:
                best = (d, off)
        if best is None:  # an empty or inverted window: answer with its nearest end
            d = min(max(lo, 0.0), self.length_m)
            la, lon_, _ = self.point_at(d)
            best = (d, haversine_m(lat, lon, la, lon_))
        return best


def match_along(
    line: Polyline, points: Sequence[tuple[float, float]], *, candidates: int = 6
) -> list[tuple[float, float]]:
    """Project points that are visited in order onto `line`: (distance along, offset) each.

    Distances never decrease. Each point's candidates are the local minima of its distance to
    the line (a loop or an out-and-back street passes near a stop twice); a dynamic programme
    picks the in-order combination with the least total offset. The line's end is always a
    candidate, so some in-order answer always exists.
    """
    options: list[list[tuple[float, float]]] = []
    for lat, lon in points:
        proj = line.segment_projections(lat, lon)
        local = [
            p
            for i, p in enumerate(proj)
            if (i == 0 or p[1] <= proj[i - 1][1]) and (i == len(proj) - 1 or p[1] <= proj[i + 1][1])
        ]
        best = sorted(local, key=lambda p: p[1])[:candidates]
        end_lat, end_lon, _ = line.point_at(line.length_m)
        best.append((line.length_m, haversine_m(lat, lon, end_lat, end_lon)))
        options.append(sorted(set(best)))
    if not options:
        return []
    # cost[j] = least total offset of an in-order choice ending with candidate j of this point
    cost = [off for _, off in options[0]]
    back: list[list[int]] = [[-1] * len(options[0])]
    for k in range(1, len(options)):
        prev, cur = options[k - 1], options[k]
        new_cost: list[float] = []
        new_back: list[int] = []
        for d, off in cur:
            choices = [(cost[i], i) for i, (pd, _) in enumerate(prev) if pd <= d + 1e-9]
            c, i = min(choices) if choices else (float("inf"), -1)
            new_cost.append(c + off)
            new_back.append(i)
        cost, back = new_cost, [*back, new_back]
    j = min(range(len(cost)), key=cost.__getitem__)
    out: list[tuple[float, float]] = []
    for k in range(len(options) - 1, -1, -1):
        out.append(options[k][j])
        j = back[k][j]
    out.reverse()
    return out
