"""A bus driving a trip: a sans-IO kinematic model, time is an argument, randomness is seeded.

The bus follows a `Polyline`, accelerating and braking within limits, slower in tight curves
and in random slowdowns, halting at red lights and at the trip's stops (where it dwells with
its doors open). Every random choice (which stops are served, dwell times, where the lights
and slowdowns are) is drawn once at construction from the seed, so a run depends only on the
seed and the path, hardly on how often `step` is called.

Speed control looks ahead: a precomputed envelope (per 10 m of path) holds the speed from
which the bus can still brake down to every curve and slowdown limit ahead, and the next halt
adds the braking curve v = sqrt(2 * decel * distance).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from hw_sim.truth import VehicleTruth
from protocols.geo import Polyline, turn_deg

__all__ = ["DEFAULT_PARAMS", "Drive", "DriveParams", "Halt"]

_BIN_M = 10.0  # resolution of the speed envelope along the path
_DT_S = 0.2  # integration step; `step(t)` subdivides longer intervals
_CURVE_HALF_M = 15.0  # the turn is measured over +-15 m: smooths jagged GTFS shapes
_START_AT_STOP_M = 5.0  # a stop this close to the start is where the bus begins, dwelling
_DOOR_OPENING_S = 1.5  # after halting, before the doors are open
_DOOR_CLOSING_S = 2.0  # doors closed this long before moving off


@dataclass(frozen=True)
class DriveParams:
    """How the bus drives. Defaults: a city bus in moderate traffic."""

    max_speed_mps: float = 13.9  # 50 km/h, the urban limit
    accel: float = 1.0  # m/s^2, a loaded city bus pulling away
    decel: float = 1.3  # m/s^2, comfortable service braking (standing passengers)
    dwell_s: tuple[float, float] = (8.0, 25.0)  # uniform, at each served stop
    traffic_noise: float = 0.15  # 0 = empty roads; scales every traffic effect below
    stop_prob: float = 0.9  # chance an intermediate stop is served (first/last always are)
    lateral_accel: float = 1.5  # m/s^2 allowed in curves: v = sqrt(a * radius)
    min_curve_speed_mps: float = 3.0
    light_spacing_m: float = 800.0  # mean distance between traffic lights
    red_s: tuple[float, float] = (8.0, 45.0)  # waiting time at a red light
    slowdowns_per_km: float = 2.0  # times traffic_noise: congestion patches per km
    idle_rpm: float = 600.0
    ambient_c: float = 25.0  # coolant starts here (a cold engine)
    coolant_c: float = 85.0  # thermostat temperature reached when warm
    warmup_s: float = 420.0  # time constant of the coolant warming
    fuel_pct: float = 80.0  # tank level at the start
    tank_l: float = 250.0
    fuel_l_per_km: float = 0.35  # a diesel city bus, stop-and-go
    idle_l_per_h: float = 2.5

    @property
    def red_prob(self) -> float:
        """Chance that a light is red when the bus arrives: 30 % at the default noise."""
        return min(1.0, 2.0 * self.traffic_noise)


DEFAULT_PARAMS = DriveParams()


@dataclass(frozen=True, slots=True)
class Halt:
    """A planned standstill: at a served stop (stop_index set) or at a red light."""

    dist_m: float
    hold_s: float
    stop_index: int | None = None
    stop_id: str | None = None


class Drive:
    """The true motion and engine state of one bus along one trip.

    `step(t)` advances to time t (never backwards) and returns the `VehicleTruth` at t.
    """

    def __init__(
        self,
        path: Polyline,
        stops: list[tuple[str, float]],
        *,
        start_t: float,
        seed: int,
        params: DriveParams = DEFAULT_PARAMS,
        start_dist_m: float = 0.0,
        odometer_m: float = 0.0,
        segment_factors: list[float] | None = None,
        dwells_s: list[float] | None = None,
    ) -> None:
        # Traffic from hw_sim/traffic.py (`drive_inputs`): per stop k, the factor stretching
        # the drive from stop k-1 to k, and the dwell at stop k (0: not served).
        self.path = path
        self.stops = list(stops)
        self._factors = segment_factors
        self._dwells = dwells_s
        self.params = p = params
        rng = random.Random(seed)
        self._t = start_t
        self._d = min(max(start_dist_m, 0.0), path.length_m)
        self._v = 0.0
        self._a = 0.0
        self._odometer = odometer_m
        self._coolant = p.ambient_c
        self._fuel_l = p.fuel_pct / 100.0 * p.tank_l
        self._fuel_used_l = 0.0
        self._engine_s = 0.0
        self._fuel_rate_lph = p.idle_l_per_h
        self.halts = self._plan_halts(rng)
        self._env = self._envelope(rng)
        self._next = 0  # index of the next halt in self.halts
        self._halt_start: float | None = None
        self.finished = False
        first = self.halts[0]
        if first.stop_index is not None and first.dist_m - self._d <= _START_AT_STOP_M:
            self._d = max(self._d, first.dist_m)
            self._halt_start = start_t

    # -- planning (all randomness is drawn here) -------------------------------------------

    def _plan_halts(self, rng: random.Random) -> list[Halt]:
        p = self.params
        ahead = [(i, sid, d) for i, (sid, d) in enumerate(self.stops) if d >= self._d - 1.0]
        halts: list[Halt] = []
        for k, (i, sid, d) in enumerate(ahead):
            dwell = rng.uniform(*p.dwell_s)
            ends = k in (0, len(ahead) - 1)
            serve = ends or rng.random() < p.stop_prob
            if self._dwells is not None and i < len(self._dwells):
                dwell, serve = self._dwells[i], ends or self._dwells[i] > 0
            if serve:
                halts.append(Halt(min(d, self.path.length_m), dwell, i, sid))
        if not halts:  # no stops ahead: the trip ends at the end of the path
            halts.append(Halt(self.path.length_m, 0.0))
        end = halts[-1].dist_m
        stop_dists = [h.dist_m for h in halts]
        if p.traffic_noise > 0 and p.light_spacing_m > 0:
            x = self._d + rng.expovariate(1.0 / p.light_spacing_m)
            while x < end - 30.0:
                red = rng.random() < p.red_prob
                hold = rng.uniform(*p.red_s)
                # A light right at a stop would stack two halts; drop it.
                if red and all(abs(x - s) > 30.0 for s in stop_dists):
                    halts.append(Halt(x, hold))
                x += rng.expovariate(1.0 / p.light_spacing_m)
        halts.sort(key=lambda h: (h.dist_m, h.stop_index is None))
        return halts

    def _envelope(self, rng: random.Random) -> list[float]:
        """Allowed speed per bin of path, already lowered so the bus can brake for what is ahead."""
        p = self.params
        n = int(self.path.length_m // _BIN_M) + 2
        limit = [p.max_speed_mps] * n
        # Cruise speed varies by stretch (traffic, road): 200 m pieces at 1 - 2*noise .. 1.
        piece = 20
        for start in range(0, n, piece):
            factor = 1.0 - 2.0 * p.traffic_noise * rng.random()
            for i in range(start, min(n, start + piece)):
                limit[i] *= max(0.2, factor)
        rate = p.slowdowns_per_km * p.traffic_noise / 1000.0
        x = rng.expovariate(rate) if rate > 0 else math.inf
        while x < self.path.length_m:
            length, factor = rng.uniform(50.0, 250.0), rng.uniform(0.25, 0.6)
            for i in range(int(x // _BIN_M), min(n, int((x + length) // _BIN_M) + 1)):
                limit[i] = min(limit[i], p.max_speed_mps * factor)
            x += length + rng.expovariate(rate)
        if self._factors is not None:  # traffic: a segment f times slower drives at 1/f
            for k in range(1, min(len(self.stops), len(self._factors))):
                f = max(0.2, self._factors[k])
                first = int(self.stops[k - 1][1] // _BIN_M)
                for i in range(first, min(n, int(self.stops[k][1] // _BIN_M))):
                    limit[i] /= f
        for i in range(n):
            limit[i] = min(limit[i], self._curve_limit(i * _BIN_M))
        env = limit[:]
        for i in range(n - 2, -1, -1):
            env[i] = min(env[i], math.sqrt(env[i + 1] ** 2 + 2.0 * p.decel * _BIN_M))
        return env

    def _curve_limit(self, x: float) -> float:
        p = self.params
        h1 = self.path.heading_at(max(0.0, x - _CURVE_HALF_M))
        h2 = self.path.heading_at(min(self.path.length_m, x + _CURVE_HALF_M))
        theta = abs(math.radians(turn_deg(h1, h2)))
        if theta < 0.05:
            return math.inf
        radius = 2.0 * _CURVE_HALF_M / theta
        return max(p.min_curve_speed_mps, math.sqrt(p.lateral_accel * radius))

    # -- simulation ----------------------------------------------------------------------

    @property
    def t(self) -> float:
        """Time of the current state, unix seconds."""
        return self._t

    @property
    def distance_m(self) -> float:
        """Distance travelled along the path from its start."""
        return self._d

    @property
    def accel_mps2(self) -> float:
        """Longitudinal acceleration over the last integration step (negative when braking)."""
        return self._a

    @property
    def fuel_rate_lph(self) -> float:
        """Instantaneous fuel consumption, litres per hour."""
        return self._fuel_rate_lph

    @property
    def fuel_used_l(self) -> float:
        """Fuel burnt since the drive began."""
        return self._fuel_used_l

    @property
    def engine_s(self) -> float:
        """Engine running time since the drive began."""
        return self._engine_s

    def step(self, t: float) -> VehicleTruth:
        """Advance the model to time `t` (unix seconds, not earlier than the last call)."""
        if t < self._t:
            raise ValueError(f"time went backwards: {t} < {self._t}")
        while self._t < t - 1e-9:
            h = min(_DT_S, t - self._t)
            if self.finished:
                self._idle(h)
            elif self._halt_start is not None:
                end = self._halt_start + self.halts[self._next].hold_s
                if self._t >= end - 1e-9:
                    self._depart()
                    continue
                self._idle(min(h, end - self._t))
            else:
                self._drive(h)
        return self.truth()

    def _depart(self) -> None:
        self._halt_start = None
        self._next += 1
        if self._next >= len(self.halts):
            self.finished = True

    def _idle(self, h: float) -> None:
        self._a = 0.0
        self._burn(h, 0.0)
        self._t += h

    def _envelope_at(self, d: float) -> float:
        # Interpolate v^2 linearly between the 10 m points: exact for constant braking, and
        # no sudden drop in allowed speed when the bus crosses into the next bin.
        i = min(int(d // _BIN_M), len(self._env) - 2)
        f = min(1.0, max(0.0, d / _BIN_M - i))
        lo, hi = self._env[i] ** 2, self._env[i + 1] ** 2
        return math.sqrt(lo + (hi - lo) * f)

    def _drive(self, h: float) -> None:
        p = self.params
        halt = self.halts[self._next]
        room = max(0.0, halt.dist_m - self._d)
        v0 = self._v
        # The speed v1 after this step from which the bus can still stop at the halt, with the
        # step's own distance (v0 + v1) / 2 * h counted: v1^2 = 2 * decel * (room - that).
        ah = p.decel * h
        stop_v = 0.5 * (-ah + math.sqrt(max(0.0, ah * ah + 8.0 * p.decel * room - 4.0 * ah * v0)))
        # The envelope is looked up half a step ahead for the same reason.
        allowed = min(self._envelope_at(self._d + 0.5 * v0 * h), stop_v)
        v1 = max(0.0, min(v0 + p.accel * h, allowed, p.max_speed_mps))
        step = 0.5 * (v0 + v1) * h
        braking_s = 2.0 * room / v0 if v0 > 1e-9 else math.inf
        if room <= 1e-3 or braking_s <= h or step >= room:
            # The halt is reached within this step: brake evenly over the remaining room,
            # which takes 2 * room / v0 seconds, then stand still from that instant.
            used = min(h, braking_s) if v0 > 1e-9 else 0.0
            self._d += room
            self._v = 0.0
            self._a = -v0 / used if used > 0 else 0.0
            self._odometer += room
            self._burn(used, room)
            self._t += used
            self._halt_start = self._t
            return
        self._d += step
        self._v = v1
        self._a = (v1 - v0) / h
        self._odometer += step
        self._burn(h, step)
        self._t += h

    def _burn(self, h: float, step_m: float) -> None:
        if h <= 0:
            return
        p = self.params
        load = 1.0 + 1.5 * max(0.0, self._a)  # accelerating costs more than cruising
        litres = p.idle_l_per_h * h / 3600.0 + p.fuel_l_per_km * step_m / 1000.0 * load
        self._fuel_rate_lph = litres / h * 3600.0
        self._fuel_l = max(0.0, self._fuel_l - litres)
        self._fuel_used_l += litres
        self._engine_s += h
        # The coolant warms towards the thermostat temperature, faster under load.
        k = h / p.warmup_s * (1.0 + 0.5 * min(1.0, self._v / max(p.max_speed_mps, 1e-9)))
        self._coolant += (p.coolant_c - self._coolant) * min(1.0, k)

    def _rpm(self) -> float:
        p = self.params
        if self._v <= 0.0:
            return p.idle_rpm
        # An automatic gearbox: rpm climbs through each gear's speed range and drops on upshift.
        lo, hi = 12.0, 20.0  # top gear, also for any speed beyond it
        for g_lo, g_hi in itertools.pairwise((0.0, 4.0, 8.0, 12.0)):
            if self._v < g_hi:
                lo, hi = g_lo, g_hi
                break
        frac = min(1.0, (self._v - lo) / (hi - lo))
        return p.idle_rpm + 250.0 + 1000.0 * frac + 200.0 * max(0.0, self._a)

    def truth(self) -> VehicleTruth:
        """The state at the current time, without advancing."""
        lat, lon, heading = self.path.point_at(self._d)
        at_stop = self._halt_start is not None and self.halts[self._next].stop_index is not None
        halt = self.halts[self._next] if at_stop else None
        doors = False
        if halt is not None and self._halt_start is not None:
            opening = min(_DOOR_OPENING_S, halt.hold_s / 4.0)
            closing = min(_DOOR_CLOSING_S, halt.hold_s / 4.0)
            since = self._t - self._halt_start
            doors = opening <= since < halt.hold_s - closing
        return VehicleTruth(
            t=self._t,
            lat=lat,
            lon=lon,
            speed_mps=self._v,
            heading_deg=heading,
            odometer_m=self._odometer,
            doors_open=doors,
            engine_rpm=self._rpm(),
            coolant_c=self._coolant,
            fuel_pct=100.0 * self._fuel_l / self.params.tank_l,
            stop_index=halt.stop_index if halt else None,
            stop_id=halt.stop_id if halt else None,
        )
