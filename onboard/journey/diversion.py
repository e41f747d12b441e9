"""Diversions on the bus: which apply to a trip now, and the trip's plan with them applied.

Pure: time is an argument. Central sends every diversion of the bus's routes in the desired
state (`protocols.schemas.Diversion`); the agent asks `active_for` at each fix and, when the
answer changes, hands `apply_diversions`'s plan to the tracker (`JourneyTracker.replace_plan`)
or the undiverted plan back when the window is over. So the timetable returns on time by the
bus's own clock, with the uplink down too.

The detour path replaces the trip's path between the points nearest its first and its last
coordinate. A trip running the other way (the end projects before the start) drives it
reversed. Stops on the replaced part that the detour does not pass within `served_m` are not
served even if dispatch did not list them; temporary stops are placed on the detour where it
passes nearest. Their timetable is interpolated between the neighbouring stops, and their
`sequence` is that of the next regular stop, so that `replace_plan` (which keeps progress by
stop_sequence) resumes at the right stop in both directions: into the diversion and out of it.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from onboard.journey.plan import PlannedStop, TripPlan
from protocols.geo import Polyline
from protocols.schemas import Diversion, TempStop

__all__ = ["Detour", "active_for", "apply_diversions", "divert"]

log = logging.getLogger("busfleet.onboard.diversion")

REACH_M = 150.0  # a detour whose ends are further from the trip's path is not for this trip
SERVED_M = 60.0  # a stop of the replaced part this close to the detour is still served

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Detour:
    """A trip's plan with its diversions applied, and what a display or driver needs of it."""

    plan: TripPlan  # diverted=True; give it to `JourneyTracker.replace_plan`
    diversions: tuple[Diversion, ...]
    skipped: tuple[PlannedStop, ...]  # stops of the undiverted plan not served, in order
    temp_ids: frozenset[str]  # stop ids of `plan` that are temporary stops
    path: tuple[Point, ...]  # the detour's own points in driving order; empty: none
    leave_m: float | None  # where the detour leaves the timetabled path, along plan.path
    rejoin_m: float | None  # and where it comes back

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.diversions)


def active_for(
    diversions: Iterable[Diversion], route_id: str, trip_id: str, t: float
) -> tuple[Diversion, ...]:
    """The diversions that apply to this trip at unix time `t`, in a stable order."""
    out = [
        d
        for d in diversions
        if d.route_id == route_id
        and (not d.trips or trip_id in d.trips)
        and (d.valid_from is None or d.valid_from <= t)
        and (d.valid_to is None or t < d.valid_to)
    ]
    return tuple(sorted(out, key=lambda d: (d.valid_from or 0.0, d.id)))


def apply_diversions(
    plan: TripPlan, diversions: Sequence[Diversion], *, reach_m: float = REACH_M
) -> Detour | None:
    """`plan` with each of `diversions` applied in turn; None when there are none."""
    if not diversions:
        return None
    detour: Detour | None = None
    for diversion in diversions:
        step = divert(detour.plan if detour else plan, diversion, reach_m=reach_m)
        if detour is not None:
            step = Detour(
                step.plan,
                (*detour.diversions, diversion),
                (*detour.skipped, *step.skipped),
                detour.temp_ids | step.temp_ids,
                step.path or detour.path,
                step.leave_m if step.path else detour.leave_m,
                step.rejoin_m if step.path else detour.rejoin_m,
            )
        detour = step
    return detour


def divert(plan: TripPlan, diversion: Diversion, *, reach_m: float = REACH_M) -> Detour:
    """`plan` with one diversion applied (see the module docstring)."""
    line = plan.path
    cut = _cut(line, [(la, lo) for la, lo in diversion.path], reach_m)
    if diversion.path and cut is None:
        log.warning("diversion %s: its path is not near trip %s", diversion.id, plan.trip_id)
    if cut is None:
        new_line, placed_on, shift = line, (0.0, line.length_m), 0.0
        da = db = 0.0
        points: tuple[Point, ...] = ()
    else:
        da, db, points = cut
        pa, pb = line.point_at(da)[:2], line.point_at(db)[:2]
        detour_m = Polyline([pa, *points, pb]).length_m
        prefix = [p for p, c in zip(line.points, line.cum_m, strict=True) if c < da]
        suffix = [p for p, c in zip(line.points, line.cum_m, strict=True) if c > db]
        new_line = Polyline([*prefix, pa, *points, pb, *suffix])
        placed_on, shift = (da, da + detour_m), da + detour_m - db
    skip = set(diversion.skip)
    kept: list[tuple[float, PlannedStop]] = []
    skipped: list[PlannedStop] = []
    for s in plan.stops:
        if s.stop_id in skip:
            skipped.append(s)
            continue
        if cut is None or s.dist_m <= da:
            d = s.dist_m
        elif s.dist_m >= db:
            d = s.dist_m + shift
        else:  # on the replaced part: served only if the detour passes by
            d, off = new_line.project(
                s.lat, s.lon, min_dist_m=placed_on[0], max_dist_m=placed_on[1]
            )
            if off > SERVED_M:
                skipped.append(s)
                continue
        kept.append((max(d, kept[-1][0]) if kept else d, s))
    if not kept:
        log.warning("diversion %s leaves no stop of trip %s: ignored", diversion.id, plan.trip_id)
        return Detour(plan, (diversion,), (), frozenset(), (), None, None)
    temps = [
        (new_line.project(ts.lat, ts.lon, min_dist_m=placed_on[0], max_dist_m=placed_on[1])[0], ts)
        for ts in diversion.temp_stops
    ]
    stops = _merge(kept, sorted(temps, key=lambda x: x[0]))
    new_plan = TripPlan(
        trip_id=plan.trip_id,
        route_id=plan.route_id,
        route_short_name=plan.route_short_name,
        headsign=plan.headsign,
        block_id=plan.block_id,
        service_date=plan.service_date,
        day_origin_t=plan.day_origin_t,
        path=new_line,
        stops=stops,
        diverted=True,
    )
    leave = da if cut is not None else None
    rejoin = placed_on[1] if cut is not None else None
    temp_ids = frozenset(ts.id for ts in diversion.temp_stops)
    return Detour(new_plan, (diversion,), tuple(skipped), temp_ids, points, leave, rejoin)


def _cut(
    line: Polyline, points: list[Point], reach_m: float
) -> tuple[float, float, tuple[Point, ...]] | None:
    """Where on `line` the detour leaves and rejoins, and its points in driving order."""
    if len(points) < 2 or len(line.points) < 2:
        return None
    da, off_a = line.project(*points[0])
    db, off_b = line.project(*points[-1])
    if db < da:  # a trip running the other way drives the detour backwards
        points = points[::-1]
        da, off_a = db, off_b
    # On a loop the rejoin point may be near the path twice: take the pass after leaving.
    db, off_b = line.project(*points[-1], min_dist_m=da)
    if max(off_a, off_b) > reach_m or db <= da:
        return None
    return da, db, tuple(points)


def _merge(
    kept: list[tuple[float, PlannedStop]], temps: list[tuple[float, TempStop]]
) -> tuple[PlannedStop, ...]:
    """Regular and temporary stops in order along the new path, renumbered."""
    rows: list[tuple[float, int, PlannedStop | TempStop]] = [(d, 0, s) for d, s in kept]
    rows += [(d, 1, ts) for d, ts in temps]
    rows.sort(key=lambda r: (r[0], r[1]))  # a temporary stop after a regular one at the same place
    dists = [d for d, _ in kept]
    out: list[PlannedStop] = []
    for d, _, item in rows:
        if isinstance(item, PlannedStop):
            out.append(
                PlannedStop(len(out), item.sequence, item.stop_id, item.name, item.lat,
                            item.lon, d, item.arrival_s, item.departure_s)
            )  # fmt: skip
            continue
        # A temporary stop: the next regular stop's sequence, times interpolated by distance.
        i = bisect_right(dists, d)
        prev, nxt = (kept[i - 1] if i > 0 else None), (kept[i] if i < len(kept) else None)
        seq = nxt[1].sequence if nxt else kept[-1][1].sequence + 1
        at = _interpolate(prev, nxt, d)
        out.append(PlannedStop(len(out), seq, item.id, item.name, item.lat, item.lon, d, at, at))
    return tuple(out)


def _interpolate(
    prev: tuple[float, PlannedStop] | None, nxt: tuple[float, PlannedStop] | None, d: float
) -> int:
    if prev is None or nxt is None:
        return prev[1].departure_s if prev else nxt[1].arrival_s if nxt else 0
    span = nxt[0] - prev[0]
    f = (d - prev[0]) / span if span > 0 else 0.0
    return round(prev[1].departure_s + f * (nxt[1].arrival_s - prev[1].departure_s))
