"""The journey tracker's vocabulary: its state tables, thresholds, events and state.

Split from tracker.py (the machine that runs them) along the seam h11 draws between
`_events`/`_state` tables and the connection: everything a reader of the tracker's output
(runtime, display, driver, portal, tests) needs, without the map matching. Pure: stdlib and
protocols only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

from protocols.schemas import Scalar

__all__ = [
    "APPROACHING",
    "ARRIVED",
    "BACK_ON_ROUTE",
    "BEYOND",
    "DEPARTED",
    "EVENT_KINDS",
    "FAR",
    "FAR_HELD",
    "HALT",
    "LEAVING",
    "NEAR",
    "NEAR_HELD",
    "NOTHING",
    "OFF",
    "OFF_ROUTE",
    "ON",
    "PASSED",
    "PENDING",
    "REJOINING",
    "ROUTE_TRANSITIONS",
    "STOP_TRANSITIONS",
    "TRIP_FINISHED",
    "TRIP_STARTED",
    "JourneyEvent",
    "JourneyState",
    "StopCall",
    "TrackerParams",
]

# Stop progress, per current stop.
APPROACHING: Final = "approaching"
ARRIVED: Final = "arrived"
DEPARTED: Final = "departed"
PASSED: Final = "passed"
HALT: Final = "halt"  # input: the bus serves the stop
BEYOND: Final = "beyond"  # input: the bus is past the stop's zone
NOTHING: Final = "nothing"

# (phase, input) -> (next phase, event kind or None); departed/passed move to the next stop.
STOP_TRANSITIONS: Final[dict[tuple[str, str], tuple[str, str | None]]] = {
    (APPROACHING, NOTHING): (APPROACHING, None),
    (APPROACHING, HALT): (ARRIVED, ARRIVED),
    (APPROACHING, BEYOND): (PASSED, PASSED),
    (ARRIVED, NOTHING): (ARRIVED, None),
    (ARRIVED, HALT): (ARRIVED, None),
    (ARRIVED, BEYOND): (DEPARTED, DEPARTED),
}

# Route adherence.
PENDING: Final = "pending"
ON: Final = "on"
LEAVING: Final = "leaving"
OFF: Final = "off"
REJOINING: Final = "rejoining"
NEAR: Final = "near"
FAR: Final = "far"
NEAR_HELD: Final = "near_held"  # near for the whole hold time
FAR_HELD: Final = "far_held"
OFF_ROUTE: Final = "off_route"
BACK_ON_ROUTE: Final = "back_on_route"

ROUTE_TRANSITIONS: Final[dict[tuple[str, str], tuple[str, str | None]]] = {
    (PENDING, NEAR): (ON, None),
    (PENDING, FAR): (PENDING, None),
    (ON, NEAR): (ON, None),
    (ON, FAR): (LEAVING, None),
    (LEAVING, NEAR): (ON, None),
    (LEAVING, FAR): (LEAVING, None),
    (LEAVING, FAR_HELD): (OFF, OFF_ROUTE),
    (OFF, FAR): (OFF, None),
    (OFF, NEAR): (REJOINING, None),
    (REJOINING, FAR): (OFF, None),
    (REJOINING, NEAR): (REJOINING, None),
    (REJOINING, NEAR_HELD): (ON, BACK_ON_ROUTE),
}

TRIP_STARTED: Final = "trip_started"
TRIP_FINISHED: Final = "trip_finished"
EVENT_KINDS: Final = (
    ARRIVED,
    DEPARTED,
    PASSED,
    OFF_ROUTE,
    BACK_ON_ROUTE,
    TRIP_STARTED,
    TRIP_FINISHED,
)


@dataclass(frozen=True, slots=True)
class TrackerParams:
    """Thresholds of the tracker; the defaults suit a city bus and consumer GPS (<= 10 m)."""

    max_hdop: float = 5.0  # fixes worse than this are ignored
    max_speed_mps: float = 25.0  # bounds how far ahead a match may jump per second
    back_m: float = 40.0  # how far behind the last match the window reaches
    ahead_slack_m: float = 50.0
    outage_s: float = 30.0  # after a gap this long, predict from the timetable, not the speed
    rejoin_back_m: float = 300.0  # off route, the bus may come back a little behind
    predict_weight: float = 0.3  # cost per metre away from where GPS speed puts the bus
    heading_weight_m: float = 40.0  # cost of a path running against the GPS track
    track_speed_mps: float = 3.0  # below this the GPS track is too noisy to use
    time_weight_m_per_s: float = 0.1  # first match: 1 m per 10 s late on the schedule
    early_factor: float = 5.0  # ... and 1 m per 2 s early
    acquire_m: float = 40.0  # first match only within this offset
    off_route_m: float = 60.0
    on_route_m: float = 35.0
    off_route_hold_s: float = 10.0
    on_route_hold_s: float = 8.0
    hold_fixes: int = 3
    zone_before_m: float = 30.0  # halt zone of a stop along the path
    zone_after_m: float = 25.0
    door_zone_m: float = 50.0  # doors opening this close count for the stop
    halt_speed_mps: float = 0.8
    halt_min_s: float = 2.0  # standing still this long serves a stop (no door signal)
    door_lag_s: float = 5.0  # doors open at most this long after the bus halts
    moving_speed_mps: float = 1.5  # departed: moving off past the halt zone
    pass_speed_mps: float = 5.0  # passed: driving on past the halt zone


@dataclass(frozen=True, slots=True)
class JourneyEvent:
    """Something that happened on the journey; `t` is when it happened (may precede the fix
    that revealed it: a departure is dated when the bus began to move)."""

    kind: str
    t: float
    trip_id: str
    route_id: str
    stop_index: int | None = None
    stop_id: str | None = None
    delay_s: float | None = None
    dist_m: float | None = None

    @property
    def severity(self) -> int:
        """For `Agent.record_event`: leaving the route unannounced is an alarm (3)."""
        return 3 if self.kind == OFF_ROUTE else 0

    def data(self) -> dict[str, Scalar]:
        """The event's fields for `Agent.record_event(kind, data, severity=..., t=...)`."""
        out: dict[str, Scalar] = {"trip": self.trip_id, "route": self.route_id}
        if self.stop_index is not None:
            out["index"] = self.stop_index
            out["stop"] = self.stop_id
        if self.delay_s is not None:
            out["delay_s"] = round(self.delay_s)
        if self.dist_m is not None:
            out["dist_m"] = round(self.dist_m)
        return out


@dataclass(frozen=True, slots=True)
class StopCall:
    """A stop still ahead (or the one the bus stands at), with schedule and expectation."""

    index: int
    stop_id: str
    name: str
    scheduled_t: float  # arrival, unix seconds
    expected_t: float


@dataclass(frozen=True, slots=True)
class JourneyState:
    """What the passenger display and the reported state need, as of `t`."""

    t: float
    trip_id: str
    route_id: str
    route_short_name: str
    headsign: str
    block_id: str | None
    service_date: date
    diverted: bool
    stop_index: int  # the stop the bus stands at (at_stop) or drives to next
    stop_id: str
    stop_name: str
    at_stop: bool
    finished: bool
    dist_m: float | None  # along the path; None before the first match
    offset_m: float | None
    adherence: str  # pending, on, leaving, off, rejoining
    delay_s: float | None
    upcoming: tuple[StopCall, ...]
    stop_requested: bool | None = None

    @property
    def on_route(self) -> bool:
        """False only once off route has been decided (not while pending or leaving)."""
        return self.adherence not in (OFF, REJOINING)
