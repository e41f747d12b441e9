"""Fix-quality gating and dead reckoning: which position the bus reports, and when GPS is lost.

Pure: no clock, no I/O. The caller passes monotonic seconds (`now`) to `update_fix()` for each
fix that arrives and to `tick()` once per telemetry interval with the CAN wheel speed.

A fix is *good* when it has a position (mode >= 2), its HDOP is not above `max_hdop`, and it
is not an implausible jump from the last good fix: further than `jump_slack_m` plus
`max_speed_mps` times the time between them (receiver time when both fixes have one, arrival
time otherwise; receiver time keeps a fast replay honest). A receiver that really moved (a
cold start somewhere else, a replayed log that loops) sends `reanchor_after` fixes that agree
with each other but not with the old anchor: the gate then accepts the new place.

States (a table, `TRANSITIONS`): *searching* until the first good fix, *ok*, and *lost* once
`stale_after_s` pass without a good fix (or `first_fix_timeout_s` without any first fix).
Entering *lost* queues a `gps_lost` event, leaving it a `gps_regained` event; `tick()` hands
them out. While lost, the position is carried on from the last good fix along its heading by
the distance the CAN wheel speed says the bus went since then, marked `estimated`; after
`dead_reckon_max_s`, or without wheel speed, or without any heading, there is no estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from protocols.geo import haversine_m, offset_m
from protocols.nmea.decoder import Fix
from protocols.schemas import Position, Scalar

__all__ = [
    "GPS_LOST",
    "GPS_REGAINED",
    "TRANSITIONS",
    "GpsEvent",
    "GpsQuality",
    "QualityLimits",
    "QualityStats",
]

SEARCHING: Final = "searching"
OK: Final = "ok"
LOST: Final = "lost"

GOOD: Final = "good"  # a good fix arrived
STALE: Final = "stale"  # no good fix for too long

GPS_LOST: Final = "gps_lost"
GPS_REGAINED: Final = "gps_regained"

# (state, input) -> (next state, event kind to emit or None)
TRANSITIONS: Final[dict[tuple[str, str], tuple[str, str | None]]] = {
    (SEARCHING, GOOD): (OK, None),
    (SEARCHING, STALE): (LOST, GPS_LOST),
    (OK, GOOD): (OK, None),
    (OK, STALE): (LOST, GPS_LOST),
    (LOST, GOOD): (OK, GPS_REGAINED),
    (LOST, STALE): (LOST, None),
}

# Rejection reasons, keys of `QualityStats.rejected`.
NO_FIX: Final = "no_fix"
HDOP: Final = "hdop"
JUMP: Final = "jump"

_STILL_M: Final = 5.0  # dead-reckoned distance below which a missing heading does not matter


@dataclass(frozen=True, slots=True)
class QualityLimits:
    """Thresholds of the gate; the defaults suit a city bus and consumer receivers."""

    stale_after_s: float = 3.0
    max_speed_mps: float = 60.0  # 216 km/h: no bus, but fast enough for any real motion
    jump_slack_m: float = 30.0  # noise allowance on top of max_speed_mps * dt (10 Hz jitter)
    max_hdop: float = 10.0
    reanchor_after: int = 3
    dead_reckon_max_s: float = 120.0
    first_fix_timeout_s: float = 120.0  # receivers take ~30 s from cold; warn well after that
    min_track_speed_mps: float = 1.0  # below this a receiver's track is noise: keep the old one


@dataclass(frozen=True, slots=True)
class GpsEvent:
    """An event for the outbox (`Agent.record_event(kind, data, severity=severity)`)."""

    kind: str
    data: dict[str, Scalar]
    severity: int = 0


@dataclass(slots=True)
class QualityStats:
    accepted: int = 0
    reanchored: int = 0  # accepted after `reanchor_after` consistent jumps
    rejected: dict[str, int] = field(default_factory=lambda: {NO_FIX: 0, HDOP: 0, JUMP: 0})
    lost: int = 0  # times GPS was declared lost


@dataclass(frozen=True, slots=True)
class _Good:
    """A fix that passed the gate, with its arrival time."""

    fix: Fix
    lat: float
    lon: float
    at: float


class GpsQuality:
    """Gate fixes, declare GPS lost/regained, dead-reckon while lost. See the module doc."""

    def __init__(self, limits: QualityLimits | None = None) -> None:
        self.limits = limits or QualityLimits()
        self.state: str = SEARCHING
        self.stats = QualityStats()
        self._last: _Good | None = None
        self._heading: float | None = None
        self._started: float | None = None  # first call, for the first-fix timeout
        self._last_any_at: float | None = None  # any fix at all, good or not
        self._last_reject = NO_FIX
        self._candidates: list[_Good] = []  # consecutive jumps that agree with each other
        self._lost_at = 0.0
        # Dead reckoning: distance the wheels say the bus went since the last good fix.
        self._dr_m = 0.0
        self._dr_t = 0.0
        self._dr_valid = True
        self._events: list[GpsEvent] = []

    @property
    def last_fix(self) -> Fix | None:
        """The last good fix (its `time` is the receiver's)."""
        return self._last.fix if self._last else None

    # -- input ---------------------------------------------------------------------------------

    def update_fix(self, fix: Fix, now: float) -> str | None:
        """Judge one fix; None when accepted, else the rejection reason (also counted)."""
        self._start(now)
        self._last_any_at = now
        reason = self._judge(fix, now)
        if reason is not None:
            self.stats.rejected[reason] += 1
            self._last_reject = reason
            return None if self._reanchor(fix, now, reason) else reason
        self._accept(fix, now)
        return None

    def tick(
        self, now: float, can_speed_mps: float | None
    ) -> tuple[Position | None, list[GpsEvent]]:
        """The position to report now (None: none worth sending) and the events since last tick.

        `can_speed_mps` is the wheel-based speed from the bus CAN, None when unknown.
        """
        self._start(now)
        self._integrate(now, can_speed_mps)
        limits = self.limits
        if self.state == SEARCHING:
            assert self._started is not None
            if now - self._started > limits.first_fix_timeout_s:
                self._input(STALE, now)
        elif self.state == OK:
            assert self._last is not None
            if now - self._last.at > limits.stale_after_s:
                self._input(STALE, now)
        events, self._events = self._events, []
        if self.state == OK:
            return self._reported(), events
        return self._estimate(now, can_speed_mps), events

    # -- the gate ------------------------------------------------------------------------------

    def _judge(self, fix: Fix, now: float) -> str | None:
        if fix.mode < 2 or fix.lat is None or fix.lon is None:
            return NO_FIX
        if fix.hdop is not None and fix.hdop > self.limits.max_hdop:
            return HDOP
        if self._last is not None and not self._plausible(self._last, fix, now):
            return JUMP
        return None

    def _plausible(self, ref: _Good, fix: Fix, now: float) -> bool:
        assert fix.lat is not None and fix.lon is not None
        if ref.fix.time is not None and fix.time is not None:
            dt = (fix.time - ref.fix.time).total_seconds()
        else:
            dt = now - ref.at
        allowed = self.limits.jump_slack_m + self.limits.max_speed_mps * max(dt, 0.0)
        return haversine_m(ref.lat, ref.lon, fix.lat, fix.lon) <= allowed

    def _reanchor(self, fix: Fix, now: float, reason: str) -> bool:
        """Accept a jump that `reanchor_after` consecutive fixes confirm; True if accepted."""
        if reason != JUMP:
            return False
        assert fix.lat is not None and fix.lon is not None
        candidate = _Good(fix, fix.lat, fix.lon, now)
        if self._candidates and self._plausible(self._candidates[-1], fix, now):
            self._candidates.append(candidate)
        else:
            self._candidates = [candidate]
        if len(self._candidates) < self.limits.reanchor_after:
            return False
        self.stats.rejected[JUMP] -= 1  # counted as a re-anchoring instead
        self.stats.reanchored += 1
        self._heading = None  # the old heading belongs to the old place
        self._accept(fix, now)
        return True

    def _accept(self, fix: Fix, now: float) -> None:
        assert fix.lat is not None and fix.lon is not None
        self.stats.accepted += 1
        self._candidates = []
        good = _Good(fix, fix.lat, fix.lon, now)
        self._input(GOOD, now, good)  # before `_last` moves on: the events describe the old one
        self._last = good
        moving = fix.speed is None or fix.speed >= self.limits.min_track_speed_mps
        if fix.track is not None and moving:
            self._heading = fix.track
        self._dr_m, self._dr_t, self._dr_valid = 0.0, now, True

    # -- the state machine ---------------------------------------------------------------------

    def _start(self, now: float) -> None:
        if self._started is None:
            self._started = self._dr_t = now

    def _input(self, what: str, now: float, good: _Good | None = None) -> None:
        state, kind = TRANSITIONS[(self.state, what)]
        if kind == GPS_LOST:
            self._events.append(self._lost_event(now))
            self.stats.lost += 1
            self._lost_at = now
        elif kind == GPS_REGAINED:
            assert good is not None
            self._events.append(self._regained_event(now, good))
        self.state = state

    def _lost_event(self, now: float) -> GpsEvent:
        data: dict[str, Scalar] = {}
        if self._last is None:
            data["reason"] = "no_first_fix"
        else:
            silent = (
                self._last_any_at is None or now - self._last_any_at > self.limits.stale_after_s
            )
            data["reason"] = "silent" if silent else self._last_reject
            data["lat"] = round(self._last.lat, 6)
            data["lon"] = round(self._last.lon, 6)
            data["since_s"] = round(now - self._last.at, 1)
        return GpsEvent(GPS_LOST, data, severity=2)

    def _regained_event(self, now: float, good: _Good) -> GpsEvent:
        data: dict[str, Scalar] = {"outage_s": round(now - self._lost_at, 1)}
        if self._last is not None and self._dr_valid:
            # How far dead reckoning was off when the receiver came back: worth watching.
            lat, lon = self._dead_reckon(self._last)
            data["dr_m"] = round(self._dr_m, 1)
            data["dr_error_m"] = round(haversine_m(lat, lon, good.lat, good.lon), 1)
        return GpsEvent(GPS_REGAINED, data)

    # -- dead reckoning ------------------------------------------------------------------------

    def _integrate(self, now: float, speed: float | None) -> None:
        dt = now - self._dr_t
        self._dr_t = now
        if dt <= 0:
            return
        if speed is None or not math.isfinite(speed):
            self._dr_valid = False  # a gap in wheel speed: the distance is unknown from here
            return
        self._dr_m += max(speed, 0.0) * dt

    def _dead_reckon(self, anchor: _Good) -> tuple[float, float]:
        if self._heading is None:
            return anchor.lat, anchor.lon
        rad = math.radians(self._heading)
        return offset_m(
            anchor.lat, anchor.lon, self._dr_m * math.cos(rad), self._dr_m * math.sin(rad)
        )

    def _estimate(self, now: float, speed: float | None) -> Position | None:
        last = self._last
        if last is None or not self._dr_valid or speed is None:
            return None
        if now - last.at > self.limits.dead_reckon_max_s:
            return None
        if self._heading is None and self._dr_m > _STILL_M:
            return None
        lat, lon = self._dead_reckon(last)
        return Position(
            lat=lat,
            lon=lon,
            speed=max(speed, 0.0),
            track=self._heading,
            mode=last.fix.mode,
            estimated=True,
        )

    def _reported(self) -> Position:
        assert self._last is not None
        fix = self._last.fix
        return Position(
            lat=self._last.lat,
            lon=self._last.lon,
            speed=fix.speed,
            track=fix.track,
            mode=fix.mode,
            hdop=fix.hdop,
            sats=fix.sats_used,
        )
