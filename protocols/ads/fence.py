"""Geo-fences for ads: is the bus inside an area, without flapping on GPS jitter.

Each fix comes with an accuracy (metres, the radius the true position is likely within).
A fence's state changes only when the fix leaves no doubt, whatever the error:

- enter when the fix is inside by at least its accuracy (signed distance + accuracy <= 0);
- leave when it is outside by more than the fence's hysteresis plus its accuracy;
- fixes less accurate than `max_accuracy_m` are ignored (the accuracy filter).

So a bus standing still, whose fixes wander within their stated accuracy, changes a fence's
state at most once; between the boundary and the hysteresis band nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocols.ads.playlist import Circle, GeoFence, Polygon
from protocols.geo import EARTH_RADIUS_M, haversine_m

DEFAULT_ACCURACY_M = 15.0  # assumed when a fix states none
UERE_M = 5.0  # metres of error per unit of HDOP (a typical user equivalent range error)


def accuracy_from_hdop(hdop: float | None) -> float | None:
    """A horizontal accuracy estimate from HDOP, when the receiver gives no eph."""
    return None if hdop is None else hdop * UERE_M


def signed_distance_m(fence: GeoFence, lat: float, lon: float) -> float:
    """Distance to the fence's boundary: negative inside, positive outside."""
    if isinstance(fence, Circle):
        return haversine_m(fence.lat, fence.lon, lat, lon) - fence.radius_m
    return _polygon_signed_distance(fence, lat, lon)


def _polygon_signed_distance(fence: Polygon, lat: float, lon: float) -> float:
    # A local flat projection around the point: fences are city-sized, the error is tiny.
    coslat = math.cos(math.radians(lat))
    k = math.radians(1.0) * EARTH_RADIUS_M
    pts = [((plon - lon) * k * coslat, (plat - lat) * k) for plat, plon in fence.points]
    inside = False
    best = math.inf
    n = len(pts)
    for i in range(n):
        x1, y1 = pts[i]
        x2, y2 = pts[(i + 1) % n]
        if (y1 > 0) != (y2 > 0) and x1 - y1 * (x2 - x1) / (y2 - y1) > 0:
            inside = not inside  # a ray from the point towards +x crosses this edge
        best = min(best, _segment_distance(x1, y1, x2, y2))
    return -best if inside else best


def _segment_distance(x1: float, y1: float, x2: float, y2: float) -> float:
    """Distance from the origin to the segment (x1, y1)-(x2, y2)."""
    dx, dy = x2 - x1, y2 - y1
    length2 = dx * dx + dy * dy
    u = 0.0 if length2 == 0 else max(0.0, min(1.0, -(x1 * dx + y1 * dy) / length2))
    return math.hypot(x1 + u * dx, y1 + u * dy)


@dataclass(frozen=True, slots=True)
class FenceChange:
    fence: str
    inside: bool


@dataclass(slots=True)
class FenceTracker:
    """Which fences the bus is in, from a stream of fixes (sans-IO: fixes are arguments)."""

    fences: list[GeoFence]
    max_accuracy_m: float = 50.0
    inside: set[str] = field(default_factory=set)
    ignored: int = 0  # fixes dropped by the accuracy filter

    def update(self, lat: float, lon: float, accuracy_m: float | None) -> list[FenceChange]:
        """Feed one fix; returns the fences entered or left because of it."""
        accuracy = DEFAULT_ACCURACY_M if accuracy_m is None else accuracy_m
        if not math.isfinite(accuracy) or accuracy > self.max_accuracy_m:
            self.ignored += 1
            return []
        changes = []
        for fence in self.fences:
            d = signed_distance_m(fence, lat, lon)
            if fence.id in self.inside:
                if d - accuracy > fence.hysteresis_m:
                    self.inside.discard(fence.id)
                    changes.append(FenceChange(fence.id, False))
            elif d + accuracy <= 0:
                self.inside.add(fence.id)
                changes.append(FenceChange(fence.id, True))
        return changes

    def replace(self, fences: Iterable[GeoFence]) -> None:
        """New fences (a new playlist); the state of fences that remain is kept."""
        self.fences = list(fences)
        self.inside &= {f.id for f in self.fences}
