"""The simulator's traffic: travel-time factors by segment and time of day, dwell by stop and
hour, and per-trip noise; repeatable (everything is drawn from the seed and names, never from
the clock or a global random state).

The model (README "The simulator's traffic model" says the same in prose):
- **Rush hours**: on weekdays a morning peak (around 08:00) and a longer, stronger evening
  peak (around 17:15) as Gaussian bumps in local time; weekends only a mild midday bump.
- **Segments** (one stop to the next) differ: each has a base factor (0.85..1.2) and a rush
  sensitivity (0.4..1.4), both drawn from the seed and the segment's stop ids, so a segment is
  the same every day. Travel time = base time x base factor x (1 + sensitivity x rush).
- **Slow junctions**: named segments (`junctions`) and a share of the others (drawn from the
  seed) are slower again at peak, by up to `junction_peak` x the rush's shape.
- **Dwell** by stop and hour: every stop has a busyness (log-normal, drawn from the seed);
  dwell = `dwell_base_s` + `dwell_busy_s` x busyness x passenger demand (which peaks a little
  before the traffic does). Quiet stops are sometimes not served at all.
- **Noise**: a factor per service day (weather), per trip (driver, load), per segment and per
  dwell, all log-normal, drawn from the seed, the day and the trip's key.

The base time of a segment comes from its length: a free-flow speed set so that driving the
whole trip off-peak takes `offpeak_share` of the scheduled running time. The timetable, made
without knowing any of this, is early at noon and late in the rush; a delay grows through the
rush and shrinks after it: what a model learned from history can know and timetable + current
delay cannot.

`simulate_trip` runs a trip at stop granularity (the bench's service days); `drive_inputs`
turns the same run into `Drive`'s per-segment speed factors and per-stop dwells, so the
kinematic simulator drives the same traffic.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

__all__ = ["Call", "Rush", "SimStop", "TrafficModel", "drive_inputs", "simulate_trip"]


@dataclass(frozen=True, slots=True)
class Rush:
    """A peak of traffic: centre (local hour), width (hours, one sigma), strength."""

    peak_h: float
    width_h: float
    strength: float


@dataclass(frozen=True, slots=True)
class SimStop:
    """One call of a trip as the timetable has it: unix times and metres along the path."""

    stop_id: str
    arrival_t: float
    departure_t: float
    dist_m: float


@dataclass(frozen=True, slots=True)
class Call:
    """What really happened at a stop: arrived, departed (equal when passed), served."""

    stop_id: str
    arrived_t: float
    departed_t: float
    served: bool
    factor: float = 1.0  # the traffic factor of the segment that led here (1 = free flow)


@functools.lru_cache(maxsize=8)
def _zone(tz: str) -> dt.tzinfo:
    return ZoneInfo(tz)


def _gauss(h: float, r: Rush) -> float:
    return r.strength * math.exp(-0.5 * ((h - r.peak_h) / r.width_h) ** 2)


@dataclass(frozen=True)
class TrafficModel:
    """Repeatable city traffic (see the module docstring); `tz` is the service's local time."""

    seed: int = 0
    tz: str = "UTC"
    rushes: tuple[Rush, ...] = (Rush(8.0, 0.9, 0.3), Rush(17.25, 1.1, 0.4))
    weekend_rushes: tuple[Rush, ...] = (Rush(12.5, 2.0, 0.1),)
    demand: tuple[Rush, ...] = (Rush(7.5, 1.0, 1.2), Rush(13.0, 2.5, 0.4), Rush(16.5, 1.2, 1.4))
    junctions: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    junction_share: float = 0.05
    junction_peak: float = 1.0
    dwell_base_s: float = 4.0
    dwell_busy_s: float = 7.0
    offpeak_share: float = 0.82
    day_noise: float = 0.04
    trip_noise: float = 0.06
    segment_noise: float = 0.12
    dwell_noise: float = 0.35

    # -- the deterministic part: what history can learn ----------------------------------------
    def local_hour(self, t: float) -> tuple[float, bool]:
        """(local hour of day as a float, weekend?) at unix time t."""
        local = dt.datetime.fromtimestamp(t, _zone(self.tz))
        return local.hour + local.minute / 60 + local.second / 3600, local.weekday() >= 5

    def rush(self, t: float) -> float:
        """How much rush there is at t: 0 at night, about 0.3 / 0.4 at the weekday peaks."""
        h, weekend = self.local_hour(t)
        return sum(_gauss(h, r) for r in (self.weekend_rushes if weekend else self.rushes))

    def _segment(self, a: str, b: str) -> tuple[float, float, bool]:
        rng = random.Random(f"{self.seed}:segment:{a}>{b}")
        base, sens = rng.uniform(0.85, 1.2), rng.uniform(0.4, 1.4)
        junction = rng.random() < self.junction_share or (a, b) in self.junctions
        return base, sens, junction

    def is_junction(self, a: str, b: str) -> bool:
        """Whether the segment a -> b is one of the slow junctions."""
        return self._segment(a, b)[2]

    def segment_factor(self, a: str, b: str, t: float) -> float:
        """The mean travel-time factor of segment a -> b entered at t (1 = free flow)."""
        base, sens, junction = self._segment(a, b)
        rush = self.rush(t)
        peak = max(r.strength for r in self.rushes)
        extra = 1.0 + self.junction_peak * min(1.0, rush / peak) if junction else 1.0
        return base * (1.0 + sens * rush) * extra

    def busyness(self, stop: str) -> float:
        """How many people board and alight at `stop`, relative (median 1)."""
        return random.Random(f"{self.seed}:stop:{stop}").lognormvariate(0.0, 0.6)

    def dwell_mean_s(self, stop: str, t: float) -> float:
        """The mean dwell at `stop` when the bus arrives at t (served)."""
        h, weekend = self.local_hour(t)
        demand = 0.4 + sum(_gauss(h, r) for r in self.demand) * (0.6 if weekend else 1.0)
        return self.dwell_base_s + self.dwell_busy_s * self.busyness(stop) * demand

    # -- the random part --------------------------------------------------------------------
    def day_factor(self, day: dt.date) -> float:
        """This service day's weather and events: the same for every trip of the day."""
        return random.Random(f"{self.seed}:day:{day.isoformat()}").lognormvariate(
            0.0, self.day_noise
        )


def simulate_trip(
    model: TrafficModel, stops: Sequence[SimStop], *, trip_key: str, day: dt.date
) -> list[Call]:
    """Drive one trip at stop granularity: when the bus arrived at and left each stop.

    Repeatable: the same model, stops, trip key and day give the same calls. The bus leaves
    its first stop no earlier than scheduled (plus a short random delay), never holds
    elsewhere, and stops at the last stop.
    """
    if not stops:
        return []
    rng = random.Random(f"{model.seed}:trip:{day.isoformat()}:{trip_key}")
    scheduled_run = max(60.0, stops[-1].arrival_t - stops[0].departure_t)
    length = max(1.0, stops[-1].dist_m - stops[0].dist_m)
    free_speed = length / (model.offpeak_share * scheduled_run)
    trip = model.day_factor(day) * rng.lognormvariate(0.0, model.trip_noise)
    t = stops[0].departure_t + rng.expovariate(1.0 / 20.0)
    calls = [Call(stops[0].stop_id, stops[0].arrival_t, t, True)]
    for k in range(1, len(stops)):
        a, b = stops[k - 1], stops[k]
        base = 8.0 + max(0.0, b.dist_m - a.dist_m) / free_speed
        factor = model.segment_factor(a.stop_id, b.stop_id, t) * trip
        factor *= rng.lognormvariate(0.0, model.segment_noise)
        arrived = t + base * factor
        busy = model.busyness(b.stop_id)
        served = k == len(stops) - 1 or rng.random() < min(0.98, 0.6 + 0.35 * busy)
        dwell = 0.0
        if served and k < len(stops) - 1:
            dwell = model.dwell_mean_s(b.stop_id, arrived) * rng.lognormvariate(
                0.0, model.dwell_noise
            )
        t = arrived + dwell
        calls.append(Call(b.stop_id, arrived, t, served, factor))
    return calls


def drive_inputs(
    model: TrafficModel, stops: Sequence[SimStop], *, trip_key: str, day: dt.date
) -> tuple[list[float], list[float]]:
    """For `hw_sim.drive.Drive(segment_factors=..., dwells_s=...)`: the traffic factor of each
    segment (stop k-1 -> k at index k; index 0 is 1) by which the drive's own travel time
    stretches, and the dwell at each stop (0: not served), from the run `simulate_trip`
    makes."""
    calls = simulate_trip(model, stops, trip_key=trip_key, day=day)
    factors = [c.factor for c in calls]
    dwells = [max(0.0, c.departed_t - c.arrived_t) if c.served else 0.0 for c in calls]
    dwells[0] = 0.0
    return factors, dwells
