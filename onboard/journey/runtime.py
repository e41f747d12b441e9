"""The journey tracker as the agent runs it: assignment in, fixes in, events and views out.

`JourneyRuntime` owns the GTFS feed and one `JourneyTracker`. It follows the applied desired
state (`assign`): a trip or block is planned at once, a route-only assignment waits for a fix
to match the trip the bus drives (`plans_for_assignment` is asked again on every fix until it
answers). A new timetable version comes in with `switch_feed`: a trip in progress finishes on
the feed it started with, and the next trip (of its block, or of a new assignment) is planned
on the new one. Each fix goes to `update`, which also applies and lifts diversions by the fix's time
(`onboard/journey/diversion.py`), so the timetable comes back on time without central.

Outputs, all cheap and side-effect free, for the agent to route:
- `update(...)` returns what happened (`JourneyEvent`s, diversion start/end events) and
  whether the reported state should be republished: only at stop granularity (another stop,
  arrived or left, another trip or diversion, the delay moved by `REPORT_DELAY_S`);
- `status()`: the `JourneyStatus` for the reported state (GTFS-Realtime at central);
- `stops_ahead()`: the next stops, with stops a diversion skips marked, never first (the
  display and the portal turn it into their views: onboard/display/journey.py and
  onboard/portal/journey.py; this core imports no presentation);
- `notice()`: the diversion text for passengers;
- `detour`: the applied `Detour` (for the driver terminal: its path, notice, skipped stops).
Pure: no I/O, no clock of its own. Loading the feed is the agent's job (in a thread).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from onboard.journey.diversion import Detour, active_for, apply_diversions
from onboard.journey.plan import TripPlan, plans_for_assignment
from onboard.journey.predicted import with_predictions
from onboard.journey.states import JourneyEvent, JourneyState, TrackerParams
from onboard.journey.tracker import JourneyTracker
from protocols.gtfs.feed import Feed
from protocols.predict import ModelTables, PredictionModel
from protocols.schemas import Assignment, Diversion, JourneyStatus, Position, Scalar

__all__ = [
    "REPORT_DELAY_S",
    "DiversionEvent",
    "JourneyRuntime",
    "JourneyUpdate",
    "Recordable",
    "StopAhead",
    "TempStopEvent",
]

log = logging.getLogger("busfleet.onboard.journey")

REPORT_DELAY_S = 30.0  # the reported delay is refreshed when it moved this much


@dataclass(frozen=True, slots=True)
class StopAhead:
    """A stop ahead of the bus, as the journey knows it (each presentation draws its own)."""

    stop_id: str
    name: str
    expected: float | None  # unix seconds; None when the bus cannot predict it
    skipped: bool = False  # a diversion leaves it out: the bus will not call here


class Recordable(Protocol):
    """An event for `Agent.record_event(e.kind, e.data(), severity=e.severity, t=e.t)`."""

    @property
    def kind(self) -> str: ...
    @property
    def t(self) -> float: ...
    @property
    def severity(self) -> int: ...
    def data(self) -> dict[str, Scalar]: ...


@dataclass(frozen=True, slots=True)
class DiversionEvent:
    """A diversion began (`diverted`) or ended (`diversion_ended`) for the tracked trip."""

    kind: str
    t: float
    trip_id: str
    route_id: str
    diversions: tuple[str, ...]
    severity: int = 0

    def data(self) -> dict[str, Scalar]:
        return {
            "trip": self.trip_id,
            "route": self.route_id,
            "diversions": ",".join(self.diversions),
        }


@dataclass(frozen=True, slots=True)
class TempStopEvent:
    """Arrived at, departed from or passed a diversion's temporary stop (not in the timetable:
    no index, `temporary` in the data)."""

    kind: str
    t: float
    trip_id: str
    route_id: str
    stop_id: str
    delay_s: float | None
    severity: int = 0

    def data(self) -> dict[str, Scalar]:
        out: dict[str, Scalar] = {"trip": self.trip_id, "route": self.route_id}
        out.update(stop=self.stop_id, temporary=True)
        if self.delay_s is not None:
            out["delay_s"] = round(self.delay_s)
        return out


@dataclass(frozen=True, slots=True)
class JourneyUpdate:
    events: tuple[Recordable, ...] = ()
    republish: bool = False  # the reported state's journey changed at stop granularity


class JourneyRuntime:
    """One bus's journey tracking (see the module docstring)."""

    def __init__(self, feed: Feed, *, params: TrackerParams | None = None) -> None:
        self.feed = feed
        self.params = params
        self.tracker: JourneyTracker | None = None
        self.detour: Detour | None = None  # the diversions applied to the tracked trip now
        self._assignment: Assignment | None = None
        self._diversions: tuple[Diversion, ...] = ()
        self._base: TripPlan | None = None  # the tracked trip's undiverted plan
        self._reported: tuple[object, ...] | None = None
        self._reported_delay: float | None = None
        self._next_feed: Feed | None = None  # a newer timetable, waiting for the trip to end
        self.model: ModelTables | None = None  # central's predictions; None: timetable + delay

    # -- inputs ---------------------------------------------------------------------------
    def set_model(self, model: PredictionModel | None) -> None:
        """Central's prediction model (desired state); expected times come from it."""
        if model is None or not (model.segments or model.dwells):
            self.model = None
        elif self.model is None or self.model.model != model:
            self.model = ModelTables(model)

    def assign(
        self,
        assignment: Assignment | None,
        diversions: Sequence[Diversion],
        now: float,
        *,
        position: tuple[float, float] | None = None,
        track: float | None = None,
    ) -> bool:
        """Follow the applied desired state; True if the tracked trip changed."""
        self._diversions = tuple(diversions)
        if assignment == self._assignment:
            return False
        self._assignment = assignment
        if self._next_feed is not None:  # the old trip is given up: the new one, on the new feed
            self.feed, self._next_feed = self._next_feed, None
        if assignment is None or not (
            assignment.trip_id or assignment.block_id or assignment.route_id
        ):
            changed = self.tracker is not None
            self.tracker, self.detour, self._base = None, None, None
            return changed
        return self._plan(now, position, track, replace=True)

    @property
    def feed_pending(self) -> bool:
        """A newer timetable waits for the trip in progress to finish."""
        return self._next_feed is not None

    def switch_feed(self, feed: Feed, now: float) -> bool:
        """A new timetable version; True if it is taken at once. While a trip is in progress
        (left its first stop, not finished) it waits: that trip finishes on its own feed, and
        the next one is planned on the new feed (`update` takes it then)."""
        self._next_feed = feed
        return self._take_feed(now)

    def _take_feed(self, t: float) -> bool:
        feed, tracker = self._next_feed, self.tracker
        if feed is None or (tracker is not None and tracker.started and not tracker.finished):
            return False
        self.feed, self._next_feed = feed, None
        log.info("journey: a new timetable from now on")
        if tracker is None or tracker.finished:
            return True  # nothing to plan again (a finished trip keeps its last state)
        # Planned but not started (or a block's next trip just begun): plan it on the new feed.
        trip = tracker.plan.trip_id
        self.tracker, self.detour, self._base = None, None, None
        if self._assignment is not None:
            self._plan(t, None, None, replace=False, from_trip=trip)
        return True

    def _plan(
        self,
        t: float,
        position: tuple[float, float] | None,
        track: float | None,
        *,
        replace: bool,
        from_trip: str | None = None,
    ) -> bool:
        a = self._assignment
        assert a is not None
        plans = plans_for_assignment(
            self.feed,
            trip_id=(from_trip or a.trip_id) if a.block_id else a.trip_id,
            block_id=a.block_id,
            route_id=a.route_id,
            t=t,
            position=position,
            track=track,
        )
        if not plans:
            if replace and self.tracker is not None:
                # Another assignment that cannot be planned yet: stop tracking the old one.
                self.tracker, self.detour, self._base = None, None, None
                return True
            return False
        if self.tracker is not None and self._base and self._base.trip_id == plans[0].trip_id:
            return False  # the trip the bus already tracks: keep its progress
        self.tracker = JourneyTracker(plans, now=t, params=self.params)
        self._base, self.detour = plans[0], None
        log.info("tracking trip %s (route %s)", plans[0].trip_id, plans[0].route_id)
        return True

    def update(
        self,
        t: float,
        pos: Position | None,
        *,
        doors_open: bool | None = None,
        stop_requested: bool | None = None,
    ) -> JourneyUpdate:
        """One telemetry sample at unix time `t` (pos None: no fix this time)."""
        events: list[Recordable] = []
        if self.tracker is None and self._assignment is not None and _usable(pos):
            assert pos is not None
            self._plan(t, (pos.lat, pos.lon), pos.track, replace=False)
        tracker = self.tracker
        if tracker is None:
            return JourneyUpdate()
        if tracker.plan.trip_id != (self._base.trip_id if self._base else None):
            # The block went on to its next trip: that trip's own plan is the undiverted one.
            self._base, self.detour = tracker.plan, None
        events += self._divert(t)
        if pos is not None:
            events += self._stop_ids(
                tracker.update(
                    t,
                    pos.lat,
                    pos.lon,
                    speed=pos.speed,
                    track=pos.track,
                    hdop=pos.hdop,
                    estimated=pos.estimated,
                    doors_open=doors_open,
                    stop_requested=stop_requested,
                )
            )
        if self._next_feed is not None:
            self._take_feed(t)
        return JourneyUpdate(tuple(events), self._republish())

    def _divert(self, t: float) -> list[Recordable]:
        """Apply the diversions due for the tracked trip at `t`, lift those that ended."""
        tracker, base = self.tracker, self._base
        assert tracker is not None and base is not None
        due = active_for(self._diversions, base.route_id, base.trip_id, t)
        have = self.detour.diversions if self.detour else ()
        if due == have:
            return []
        self.detour = apply_diversions(base, due)
        tracker.replace_plan(self.detour.plan if self.detour else base)
        ids = tuple(d.id for d in due)
        kind = "diverted" if ids else "diversion_ended"
        log.info("trip %s: %s %s", base.trip_id, kind, ",".join(ids or [d.id for d in have]))
        return [
            DiversionEvent(kind, t, base.trip_id, base.route_id, ids or tuple(d.id for d in have))
        ]

    def _stop_ids(self, events: list[JourneyEvent]) -> list[Recordable]:
        """Diverted plans number their stops afresh: give events the timetable's index, so
        that central reads the right stop; a temporary stop has none (`TempStopEvent`)."""
        detour, base = self.detour, self._base
        if detour is None or base is None:
            return list(events)
        plan = detour.plan
        by_seq = {s.sequence: s.index for s in base.stops}
        out: list[Recordable] = []
        for e in events:
            if e.trip_id != plan.trip_id or e.stop_index is None or e.stop_index >= len(plan.stops):
                out.append(e)
                continue
            stop = plan.stops[e.stop_index]
            if stop.stop_id in detour.temp_ids:
                out.append(
                    TempStopEvent(e.kind, e.t, e.trip_id, e.route_id, stop.stop_id, e.delay_s)
                )
            else:
                index = by_seq.get(stop.sequence)
                out.append(dataclasses.replace(e, stop_index=index, stop_id=stop.stop_id))
        return out

    # -- outputs --------------------------------------------------------------------------
    @property
    def state(self) -> JourneyState | None:
        """The tracker's state, its expected times predicted when central sent a model."""
        if self.tracker is None:
            return None
        state = self.tracker.state
        if self.model is not None:
            state = with_predictions(state, self.tracker.plan, self.model)
        return state

    @property
    def plan(self) -> TripPlan | None:
        """The plan tracked now: diverted while a diversion is in force (the driver's map)."""
        return self.tracker.plan if self.tracker else None

    @property
    def detour_m(self) -> tuple[float, float] | None:
        """Where the detour in force leaves and rejoins the timetabled path, in metres along
        `plan.path` (for `onboard.driver.model.driver_state(detour_m=...)`); None: no detour."""
        d = self.detour
        if d is None or d.leave_m is None or d.rejoin_m is None:
            return None
        return d.leave_m, d.rejoin_m

    def status(self) -> JourneyStatus | None:
        """Where the bus is on its trip, for the reported state (a temporary stop is not in
        the timetable: the next regular stop stands for it)."""
        tracker = self.tracker
        if tracker is None:
            return None
        state, plan = tracker.state, tracker.plan
        temp = self.detour.temp_ids if self.detour else frozenset()
        stop = next((plan.stops[c.index] for c in state.upcoming if c.stop_id not in temp), None)
        at_stop = state.at_stop and stop is not None and stop.index == state.stop_index
        if stop is None and state.stop_id not in temp:
            stop = plan.stops[state.stop_index]
        return JourneyStatus(
            t=state.t,
            trip_id=state.trip_id,
            route_id=state.route_id,
            start_date=state.service_date.strftime("%Y%m%d"),
            stop_id=stop.stop_id if stop else None,
            stop_sequence=stop.sequence if stop else None,
            at_stop=at_stop,
            delay_s=None if state.delay_s is None else round(state.delay_s),
            finished=state.finished,
            diversions=list(self.detour.ids) if self.detour else [],
        )

    def _republish(self) -> bool:
        status = self.status()
        if status is None:
            key: tuple[object, ...] | None = None
            delay = None
        else:
            key = (status.trip_id, status.stop_id, status.at_stop, status.finished,
                   tuple(status.diversions), status.delay_s is None)  # fmt: skip
            delay = status.delay_s
        moved = (
            delay is not None
            and self._reported_delay is not None
            and abs(delay - self._reported_delay) >= REPORT_DELAY_S
        )
        if key == self._reported and not moved:
            return False
        self._reported, self._reported_delay = key, delay
        return True

    def stops_ahead(self) -> tuple[StopAhead, ...] | None:
        """The tracker's next stops, and after the first of them the stops a diversion skips,
        marked skipped (a skipped stop is never the next stop); None: nothing tracked.

        The presentations turn this into their own views (onboard/display/journey.py,
        onboard/portal/journey.py); the journey core knows none of them.
        """
        tracker, state = self.tracker, self.state
        if tracker is None or state is None:
            return None
        ahead = [StopAhead(c.stop_id, c.name, c.expected_t) for c in state.upcoming]
        if self.detour is None or not state.upcoming:
            return tuple(ahead)
        plan = tracker.plan
        first = plan.stops[state.upcoming[0].index]
        before = plan.stops[first.index - 1].sequence if first.index > 0 else -1
        pending = [s for s in self.detour.skipped if s.sequence > before]
        pending.sort(key=lambda s: s.sequence)
        stops = [ahead[0]]
        for call, shown in zip(state.upcoming[1:], ahead[1:], strict=True):
            seq = plan.stops[call.index].sequence
            while pending and pending[0].sequence < seq:
                s = pending.pop(0)
                stops.append(StopAhead(s.stop_id, s.name, None, skipped=True))
            stops.append(shown)
        stops += [StopAhead(s.stop_id, s.name, None, skipped=True) for s in pending]
        return tuple(stops)

    def notice(self) -> str | None:
        """The diversion notice for passengers (German, then English if it differs)."""
        if self.detour is None:
            return None
        texts: list[str] = []
        for d in self.detour.diversions:
            for text in (d.notice_de.strip(), d.notice_en.strip()):
                if text and text not in texts:
                    texts.append(text)
        if not texts:
            names = ", ".join(s.name for s in self.detour.skipped)
            return names or "—"
        return " / ".join(texts)


def _usable(pos: Position | None) -> bool:
    return pos is not None and not pos.estimated
