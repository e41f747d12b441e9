"""Journey tracking: where on its trip the bus is, which stops it served, how late it runs.

Pure and sans-IO: the caller passes every input, time included, to `JourneyTracker.update()`
and gets `JourneyEvent`s back; `JourneyTracker.state` is what a passenger display shows.
The tables, thresholds, events and state it speaks in are in onboard/journey/states.py.

Map matching. A fix is projected only onto a window of the trip's path around the last
matched distance: from `back_m` behind to as far ahead as the bus could have driven since
(`max_speed_mps` times the time since the last match, plus `ahead_slack_m`). Within the
window the candidate with the least cost wins: its offset, plus a penalty when the path runs
against the GPS track, plus a pull towards where the GPS speed predicts the bus. So a loop,
or a street driven out and back, is never matched to its other pass. The first fix of a trip
(or of a diverted plan) is matched against the whole path; there the schedule breaks ties:
one metre of offset per 10 s away from where the timetable has the bus.

Stops (table `STOP_TRANSITIONS`, one stop at a time, the *current* stop): *approaching* →
*arrived* when the bus serves it (doors open within `door_zone_m`; without a door signal,
standing still `halt_min_s` within the smaller halt zone; with the doors known closed, never)
→ *departed* once it is past the halt zone with the doors closed. A stop the bus goes past
without serving is *passed*. Zones end half way to the neighbouring stop. *departed* and
*passed* move on to the next stop; arriving at the last one finishes the trip, and the tracker
continues with the next plan of the block, if any.

Route adherence (table `ROUTE_TRANSITIONS`): *on* → *leaving* when the best match is further
than `off_route_m`; *leaving* → *off* (event off_route) once that lasted `off_route_hold_s`
and `hold_fixes` fixes. Off route the matched distance stays where the bus left; a fix within
`on_route_m` of the path (and along it, when moving) no further ahead than the bus has driven
since starts *rejoining*, which after `on_route_hold_s` becomes *on* again (back_on_route);
stops skipped in between are passed. *pending* is the state before the first match.

Delay (positive = late) is the time now minus when the schedule has the bus at its matched
distance; at a stop, the later of the arrival delay and the departure delay so far; before
the trip starts, how far past the first departure it is (never negative: a bus waiting at
the terminus is not early). Expected times propagate the current delay unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from onboard.journey.plan import Candidate, PathIndex, TripPlan, heading_penalty
from onboard.journey.states import (
    APPROACHING,
    ARRIVED,
    BEYOND,
    DEPARTED,
    FAR,
    FAR_HELD,
    HALT,
    LEAVING,
    NEAR,
    NEAR_HELD,
    NOTHING,
    OFF,
    ON,
    PASSED,
    PENDING,
    REJOINING,
    ROUTE_TRANSITIONS,
    STOP_TRANSITIONS,
    TRIP_FINISHED,
    TRIP_STARTED,
    JourneyEvent,
    JourneyState,
    StopCall,
    TrackerParams,
)
from protocols.geo import haversine_m

__all__ = [
    "ROUTE_TRANSITIONS",
    "STOP_TRANSITIONS",
    "JourneyEvent",
    "JourneyState",
    "JourneyTracker",
    "StopCall",
    "TrackerParams",
]


class _Fix(NamedTuple):
    t: float
    lat: float
    lon: float
    v: float  # m/s, the receiver's or derived from the last fix
    track: float | None  # None when too slow for the track to mean anything


class JourneyTracker:
    """Tracks one trip, or a block of trips one after the other. See the module docstring."""

    def __init__(
        self,
        plans: TripPlan | Sequence[TripPlan],
        *,
        now: float,
        params: TrackerParams | None = None,
    ) -> None:
        queue = [plans] if isinstance(plans, TripPlan) else list(plans)
        if not queue:
            raise ValueError("a tracker needs at least one trip plan")
        self.params = params or TrackerParams()
        self.ignored = 0  # fixes not used: no position, poor HDOP, estimated, out of order
        self._t = now
        self._stop_requested: bool | None = None
        self._last_fix: _Fix | None = None
        self._halt_since: float | None = None
        self._moving_since: float | None = None
        self._doors_since: float | None = None
        self._queue = queue[1:]
        self._start(queue[0], now)

    def _start(self, plan: TripPlan, t: float, *, keep_stop: int | None = None) -> None:
        p = self.params
        self.plan = plan
        self._index = PathIndex(plan.path)
        n = len(plan.stops)
        self._zones = [_zone(plan, i, p.zone_before_m, p.zone_after_m) for i in range(n)]
        self._door = [_zone(plan, i, p.door_zone_m, p.door_zone_m) for i in range(n)]
        self._k = keep_stop or 0
        self._keep_k = keep_stop is not None  # a diversion: the stop comes from the old plan
        self._phase = APPROACHING
        self._route = PENDING
        self._d: float | None = None  # matched distance along the path
        self._d_t = t
        self._offset: float | None = None
        self._pending_since = t  # when the route state last changed
        self._pending_fixes = 0
        self._travelled = 0.0  # metres driven since leaving the route
        self._rejoin: Candidate | None = None
        self._rejoin_t = t
        self._plan_t = t
        self._arrived_t = t
        self._arrival_delay = 0.0
        self._final_delay = 0.0
        self._delay: float | None = None
        self._started = False
        self._finished = False

    # -- input ---------------------------------------------------------------------------

    def update(
        self,
        t: float,
        lat: float | None,
        lon: float | None,
        *,
        speed: float | None = None,
        track: float | None = None,
        hdop: float | None = None,
        estimated: bool = False,
        doors_open: bool | None = None,
        stop_requested: bool | None = None,
    ) -> list[JourneyEvent]:
        """Take one fix (lat/lon None: no fix) at unix time `t`; return what happened.

        `speed` m/s and `track` degrees as the receiver gives them; `doors_open` from the
        vehicle CAN (None: no door signal). Estimated (dead-reckoned) positions are ignored:
        they drift off the path in curves and would fake an off-route.
        """
        self._stop_requested = stop_requested
        last = self._last_fix
        if lat is None or lon is None or estimated or (last is not None and t < last.t):
            self.ignored += 1
            return []
        if hdop is not None and hdop > self.params.max_hdop:
            self.ignored += 1
            return []
        v = speed
        if v is None:
            gap = t - last.t if last is not None else 0.0
            v = haversine_m(last.lat, last.lon, lat, lon) / gap if last and gap > 0 else 0.0
        fix = _Fix(t, lat, lon, v, track if v >= self.params.track_speed_mps else None)
        dt = t - last.t if last is not None else 0.0
        self._t = max(self._t, t)
        self._last_fix = fix
        self._halt_timers(fix, doors_open)
        if self._finished:
            return []
        events: list[JourneyEvent] = []
        if self._route == PENDING:
            self._acquire(fix)
        else:
            self._follow(fix, dt, events)
        if self._route == ON:
            self._progress(fix, doors_open, events)
        self._delay = self._compute_delay(t)
        if self._finished and self._queue:
            self._start(self._queue.pop(0), t)
        return events

    @property
    def started(self) -> bool:
        """The bus has left (or passed) the trip's first stop: the trip is in progress."""
        return self._started

    @property
    def finished(self) -> bool:
        """The last trip of the tracker is done."""
        return self._finished and not self._queue

    def replace_plan(self, plan: TripPlan) -> None:
        """Take a new plan: for the same trip (a diversion) progress is kept by stop_sequence,
        stops left out are never announced and the new path is matched afresh; for another
        trip (a new assignment) tracking starts over with that trip alone."""
        if plan.trip_id != self.plan.trip_id:
            self._queue = []
            self._start(plan, self._t)
            return
        old = self.plan.stops[self._k]
        kept = (self._phase, self._started, self._finished, self._arrived_t)
        delays = (self._arrival_delay, self._final_delay, self._delay)
        was_off = self._route in (OFF, REJOINING)
        k = next((s.index for s in plan.stops if s.sequence >= old.sequence), len(plan.stops) - 1)
        self._start(plan, self._t, keep_stop=k)
        phase, self._started, self._finished, self._arrived_t = kept
        self._arrival_delay, self._final_delay, self._delay = delays
        if phase == ARRIVED and plan.stops[k].sequence == old.sequence:
            self._phase = ARRIVED  # dwelling at a stop the diversion keeps
        if was_off:
            # Off route until the bus is on the new path: then back_on_route clears it.
            self._route = OFF
            self._travelled = math.inf
            self._d = plan.stops[k - 1].dist_m if k > 0 else 0.0

    # -- matching ------------------------------------------------------------------------

    def _halt_timers(self, fix: _Fix, doors_open: bool | None) -> None:
        if doors_open is not True:
            self._doors_since = None
        elif self._doors_since is None:
            self._doors_since = fix.t
        if fix.v < self.params.halt_speed_mps:
            self._halt_since = self._halt_since if self._halt_since is not None else fix.t
            self._moving_since = None
        else:
            self._halt_since = None
            self._moving_since = self._moving_since if self._moving_since is not None else fix.t

    def _acquire(self, fix: _Fix) -> None:
        """The first match of a plan: anywhere on the path, the schedule breaking ties."""
        p = self.params
        lo = self.plan.stops[self._k - 1].dist_m if self._keep_k and self._k > 0 else 0.0
        cands = [
            c
            for c in self._index.local_minima(fix.lat, fix.lon, p.acquire_m)
            if c.dist_m >= lo - p.back_m
        ]
        if not cands:
            return

        def cost(c: Candidate) -> float:
            late = fix.t - self.plan.scheduled_t_at(c.dist_m)
            if c.dist_m <= self._zones[0][1]:
                late = max(late, 0.0)  # waiting at the first stop is not running early
            # Buses run late far more often than early: being early costs five times more.
            time_cost = late if late >= 0 else -late * p.early_factor
            pen = heading_penalty(fix.track, c.heading_deg, p.heading_weight_m)
            return c.offset_m + pen + p.time_weight_m_per_s * time_cost

        best = min(cands, key=cost)
        self._set_match(best, fix.t)
        self._route = ON
        if not self._keep_k:
            # The door zone, not the halt zone: GPS error must not skip the stop it stands at.
            self._k = next(
                (i for i, (_, hi) in enumerate(self._door) if best.dist_m <= hi),
                len(self._door) - 1,
            )
            self._started = self._k > 0

    def _set_match(self, c: Candidate, t: float) -> None:
        self._d, self._offset, self._d_t = c.dist_m, c.offset_m, t

    def _window(self, around: float, since: float, fix: _Fix) -> Candidate | None:
        """The best match within reach of distance `around`, last matched at time `since`."""
        p = self.params
        span = max(0.0, fix.t - since)
        hi = around + p.max_speed_mps * span + p.ahead_slack_m
        cands = self._index.candidates(fix.lat, fix.lon, around - p.back_m, hi)
        if not cands:
            return None
        predicted = around + fix.v * span
        if span > p.outage_s and self._delay is not None:
            # After a long gap the speed now says little about the way driven meanwhile;
            # the timetable, shifted by the delay so far, says more (and on a loop, which pass).
            predicted = max(around, self.plan.scheduled_dist_at(fix.t - self._delay))

        def cost(c: Candidate) -> float:
            pen = heading_penalty(fix.track, c.heading_deg, p.heading_weight_m)
            return c.offset_m + pen + p.predict_weight * abs(c.dist_m - predicted)

        return min(cands, key=cost)

    def _follow(self, fix: _Fix, dt: float, events: list[JourneyEvent]) -> None:
        """Match a fix after the first one and step the route-adherence table."""
        p = self.params
        state = self._route
        if state in (ON, LEAVING):
            inp, best = self._match_on_route(fix)
            hold = p.off_route_hold_s
        else:
            self._travelled += fix.v * dt
            inp, best = self._match_off_route(fix)
            hold = p.on_route_hold_s
        held = fix.t - self._pending_since >= hold and self._pending_fixes + 1 >= p.hold_fixes
        if held and (state, inp) in ((LEAVING, FAR), (REJOINING, NEAR)):
            inp = FAR_HELD if inp == FAR else NEAR_HELD
        new, kind = ROUTE_TRANSITIONS[(state, inp)]
        if new == state:
            self._pending_fixes += 1
        else:
            self._pending_since, self._pending_fixes = fix.t, 0
            if new == LEAVING:
                self._travelled = 0.0
            elif new == REJOINING:
                self._rejoin, self._rejoin_t = best, fix.t
            elif new == ON and state == REJOINING and self._rejoin is not None:
                self._set_match(self._rejoin, fix.t)
                self._rejoin = None
        self._route = new
        if kind is not None:
            events.append(self._event(kind, fix.t, None, dist=self._d))

    def _match_on_route(self, fix: _Fix) -> tuple[str, Candidate | None]:
        assert self._d is not None  # matched before leaving PENDING
        best = self._window(self._d, self._d_t, fix)
        if best is not None and best.offset_m <= self.params.off_route_m:
            self._set_match(best, fix.t)
            return NEAR, best
        # Too far: the matched distance stays where the bus was last seen on the path.
        self._offset = best.offset_m if best is not None else None
        return FAR, best

    def _match_off_route(self, fix: _Fix) -> tuple[str, Candidate | None]:
        p = self.params
        best = None
        if self._route == REJOINING and self._rejoin is not None:
            # Follow the rejoin point along the path while the hold runs.
            best = self._window(self._rejoin.dist_m, self._rejoin_t, fix)
        if best is None or best.offset_m > p.on_route_m:
            best = self._rejoin_candidate(fix)
        self._offset = best.offset_m if best is not None else None
        if best is None or best.offset_m > p.on_route_m:
            return FAR, best
        if self._route == REJOINING:
            self._rejoin, self._rejoin_t = best, fix.t
        return NEAR, best

    def _rejoin_candidate(self, fix: _Fix) -> Candidate | None:
        """Off route: the best place to rejoin, no further ahead than the bus has driven."""
        p = self.params
        assert self._d is not None
        hi = self._d + 1.25 * self._travelled + p.ahead_slack_m
        cands = [
            c
            for c in self._index.candidates(fix.lat, fix.lon, self._d - p.rejoin_back_m, hi)
            if c.offset_m <= p.on_route_m
            and (fix.track is None or abs(_turn(fix.track, c.heading_deg)) < 60.0)
        ]
        return min(cands, key=lambda c: (c.offset_m, c.dist_m)) if cands else None

    # -- stops ---------------------------------------------------------------------------

    def _stop_input(self, fix: _Fix, doors_open: bool | None) -> str:
        p = self.params
        d = self._d
        assert d is not None
        lo, hi = self._zones[self._k]
        dlo, dhi = self._door[self._k]
        if self._phase == APPROACHING:
            if doors_open is True and dlo <= d <= dhi:
                return HALT
            halted = self._halt_since is not None and fix.t - self._halt_since >= p.halt_min_s
            # The terminus counts even with the doors shut: an empty bus ends its trip too.
            last = self._k == len(self._zones) - 1
            if (doors_open is None or last) and halted and lo <= d <= hi:
                return HALT
            # GPS error along the path can put a bus braking for the stop past its zone:
            # passed needs it either well past (the door zone) or driving on at speed.
            if d > hi and (fix.v >= p.pass_speed_mps or d > dhi):
                return BEYOND
            return NOTHING
        if d > hi and doors_open is not True and (fix.v >= p.moving_speed_mps or d > dhi):
            return BEYOND
        return NOTHING

    def _progress(self, fix: _Fix, doors_open: bool | None, ev: list[JourneyEvent]) -> None:
        """Step the stop table, moving on through every stop the bus is already past."""
        last = len(self.plan.stops) - 1
        while not self._finished:
            k = self._k
            phase, kind = STOP_TRANSITIONS[(self._phase, self._stop_input(fix, doors_open))]
            if kind == ARRIVED:
                at = self._arrival_time(fix.t)
                self._arrived_t = at
                self._arrival_delay = at - self.plan.arrival_t(k)
                ev.append(self._event(ARRIVED, at, k, delay=self._arrival_delay))
            elif kind == DEPARTED:
                at = self._moving_since if self._moving_since is not None else fix.t
                ev.append(self._event(DEPARTED, at, k, delay=at - self.plan.departure_t(k)))
            elif kind == PASSED:
                ev.append(self._event(PASSED, fix.t, k, delay=fix.t - self.plan.arrival_t(k)))
            self._phase = phase
            if kind in (PASSED, DEPARTED) and not self._started:
                self._started = True
                ev.append(self._event(TRIP_STARTED, ev[-1].t, None, delay=ev[-1].delay_s))
            if k == last and kind in (PASSED, ARRIVED):
                self._finished = True
                self._final_delay = ev[-1].delay_s or 0.0
                ev.append(self._event(TRIP_FINISHED, ev[-1].t, k, delay=ev[-1].delay_s))
            elif phase in (PASSED, DEPARTED):
                self._k, self._phase = k + 1, APPROACHING
                continue
            return

    def _arrival_time(self, t: float) -> float:
        """When the bus stopped; but a bus that stood with its doors shut (a layover at the
        terminus) arrives for the trip when it opens them. Doors open a moment after the
        halt, so a halt up to `door_lag_s` earlier still counts."""
        at = self._halt_since if self._halt_since is not None else t
        if self._doors_since is not None:
            at = max(at, self._doors_since - self.params.door_lag_s)
        return max(at, self._plan_t)  # the next trip of a block begins where the last ended

    def _event(
        self, kind: str, t: float, k: int | None, *, delay: float | None = None,
        dist: float | None = None,
    ) -> JourneyEvent:  # fmt: skip
        stop_id = self.plan.stops[k].stop_id if k is not None else None
        return JourneyEvent(
            kind, t, self.plan.trip_id, self.plan.route_id, k, stop_id, delay, dist
        )  # fmt: skip

    # -- output --------------------------------------------------------------------------

    def _compute_delay(self, t: float) -> float | None:
        plan = self.plan
        if self._d is None:
            return None
        if self._finished:
            return self._final_delay
        if not self._started:
            return max(0.0, t - plan.first_departure_t)
        if self._phase == ARRIVED:
            return max(self._arrival_delay, t - plan.departure_t(self._k))
        return t - plan.scheduled_t_at(self._d)

    @property
    def state(self) -> JourneyState:
        """The journey as of the last update."""
        plan = self.plan
        k = self._k
        stop = plan.stops[k]
        delay = self._delay
        at_stop = self._phase == ARRIVED
        upcoming: list[StopCall] = []
        if not self._finished:
            for s in plan.stops[k:]:
                sched = plan.arrival_t(s.index)
                here = at_stop and s.index == k
                expected = self._arrived_t if here else sched + (delay or 0.0)
                upcoming.append(StopCall(s.index, s.stop_id, s.name, sched, expected))
        return JourneyState(
            t=self._t,
            trip_id=plan.trip_id,
            route_id=plan.route_id,
            route_short_name=plan.route_short_name,
            headsign=plan.headsign,
            block_id=plan.block_id,
            service_date=plan.service_date,
            diverted=plan.diverted,
            stop_index=k,
            stop_id=stop.stop_id,
            stop_name=stop.name,
            at_stop=at_stop,
            finished=self._finished,
            dist_m=self._d,
            offset_m=self._offset,
            adherence=self._route,
            delay_s=delay,
            upcoming=tuple(upcoming),
            stop_requested=self._stop_requested,
        )


def _zone(plan: TripPlan, i: int, before: float, after: float) -> tuple[float, float]:
    """Along-path extent of stop i's zone, ending half way to its neighbours."""
    d = plan.stops[i].dist_m
    lo = max(d - before, (plan.stops[i - 1].dist_m + d) / 2) if i > 0 else -math.inf
    last = i == len(plan.stops) - 1
    hi = math.inf if last else min(d + after, (d + plan.stops[i + 1].dist_m) / 2)
    return lo, hi


def _turn(a: float, b: float) -> float:
    return (b - a + 180.0) % 360.0 - 180.0
