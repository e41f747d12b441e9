"""Telemetry: the latest GPS and CAN state sampled once per interval into the outbox.

Inputs only update the latest state (the GPS judge, the CAN input); `Telemetry.run()` samples
it once per interval, so a burst on the CAN bus or a fast GPS never grows a queue. Each record
is numbered by the outbox and encoded once (`Outbox.put`). The sample also goes to
`on_sample` (the agent's journey tracking and display), whether or not it is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from onboard.gps.base import GpsSource
from onboard.gps.quality import GpsQuality
from onboard.link.outbox import Outbox
from onboard.recorder import EventRecorder
from onboard.vehicle.can_input import CanInput
from protocols import codec
from protocols.j1939.vehicle import VehicleState
from protocols.schemas import TelemetryRecord, Vehicle

__all__ = ["Telemetry"]


class Telemetry:
    """Samples position and vehicle state every `interval_s` into the outbox."""

    def __init__(
        self,
        outbox: Outbox,
        events: EventRecorder,
        quality: GpsQuality,
        gps: GpsSource | None,
        can: CanInput | None,
        *,
        interval_s: float,
        wake: Callable[[], None],
        on_sample: Callable[[TelemetryRecord], None] = lambda _record: None,
    ) -> None:
        self.outbox = outbox
        self.events = events
        self.quality = quality
        self.gps = gps
        self.can = can
        self.interval_s = interval_s
        self.wake = wake
        self.on_sample = on_sample
        self.records = 0  # stored since start
        self.first_seq: int | None = None  # the first one's number (an update's health proof)
        self._can_frames_seen = 0

    def sample(self) -> TelemetryRecord:
        """The record for this interval (seq 0: the outbox numbers it): the position (a good
        fix, or dead reckoning while the GPS is lost, marked estimated) and the vehicle
        summary."""
        t = time.time()
        pos = None
        can = self.can
        if self.gps is not None:
            can_speed = None
            # Wheel speed counts only if CAN frames came since the last sample.
            if can and can.frames > self._can_frames_seen and can.state.speed_kmh is not None:
                can_speed = can.state.speed_kmh / 3.6
            self._can_frames_seen = can.frames if can else 0
            pos, events = self.quality.tick(time.monotonic(), can_speed)
            for e in events:
                self.events.record(e.kind, e.data, severity=e.severity)
            last = self.quality.last_fix
            if pos is not None and not pos.estimated and last is not None and last.time:
                t = last.time.timestamp()
        veh = vehicle(can.state) if can and can.frames else None
        return TelemetryRecord(seq=0, t=t, pos=pos, veh=veh)

    def store(self, record: TelemetryRecord) -> int | None:
        """Into the outbox, numbered and encoded once, within the schema's bounds (a GPS
        clock out of them gives way to the agent's); returns its sequence number, None if
        nothing of it was fit to send."""
        bounds = self.events.bounds
        fitted = bounds.fit(record) or bounds.fit(msgspec.structs.replace(record, t=time.time()))
        if fitted is None:
            return None
        seq = self.outbox.put("telemetry", _numbered(fitted))
        self.records += 1
        self.first_seq = self.first_seq or seq
        self.wake()
        return seq

    async def run(self) -> None:
        """Sample on a steady beat (no drift), until cancelled."""
        next_at = time.monotonic()
        while True:
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            record = self.sample()
            self.on_sample(record)
            if record.pos is None and record.veh is None:
                continue
            self.store(record)


def _numbered(record: TelemetryRecord) -> Callable[[int], bytes]:
    """The body builder of one record: encoded once, with the number the outbox gives it."""
    return lambda seq: codec.encode(msgspec.structs.replace(record, seq=seq))


def vehicle(state: VehicleState) -> Vehicle:
    """The telemetry's vehicle summary of the CAN state."""
    return Vehicle(
        speed_kmh=state.speed_kmh,
        rpm=state.engine_rpm,
        doors_open=state.doors_open,
        coolant_c=state.coolant_c,
        fuel_pct=state.fuel_pct,
        odometer_m=state.odometer_m,
    )
