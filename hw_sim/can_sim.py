"""Simulated bus-FMS gateway: frames from a VehicleTruth, fault injection, a python-can sender.

The frames come from the same DBC table the decoder reads (`protocols.j1939.encode`), so what
the simulator sends is what a real gateway would send for that vehicle state. Faults cover what
real buses do: whole PGNs sent as 0xFF (not available), in-band error values, a silent gateway,
full-load bursts, and active DTCs by TP.BAM.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import can

from hw_sim.truth import VehicleTruth
from protocols.j1939 import decode as j1939
from protocols.j1939.candump import parse_candump
from protocols.j1939.decode import Dtc, Lamps

# A bus has no fuel-rate or battery model in VehicleTruth: plausible constants and a simple
# function of engine speed keep the frames consistent with the drive without pretending more.
BATTERY_V = 27.6  # 24 V system with the alternator charging
AMBIENT_C = 26.0  # Cairns
VIN_EVERY_CYCLES = 60


@dataclass(frozen=True, slots=True)
class Faults:
    """What to break: n/a or error values in every signal, silence, bursts, active DTCs."""

    na_values: bool = False  # every frame all 0xFF, as some trucks send unused PGNs
    error_values: bool = False  # every signal carries its in-band error value
    silent: bool = False  # the gateway sends nothing
    burst_fps: int | None = None  # pad each cycle with repeats up to this many frames
    dm1: list[Dtc] = field(default_factory=list)  # active DTCs, sent as DM1 (TP.BAM if > 1)


def _values(truth: VehicleTruth) -> dict[int, dict[int, float | int]]:
    """SPN values per PGN for one instant of the drive."""
    speed_kmh = min(max(truth.speed_mps * 3.6, 0.0), 250.0)
    rpm = min(max(truth.engine_rpm, 0.0), 8000.0)
    doors = truth.doors_open
    moving = speed_kmh > 0.5
    when = datetime.fromtimestamp(truth.t, UTC)
    return {
        j1939.PGN_EEC1: {190: rpm, 513: 20 if moving else 5},
        j1939.PGN_CCVS1: {84: speed_kmh, 70: 0, 597: 0 if moving else 1},
        j1939.PGN_ET1: {110: min(max(round(truth.coolant_c), -40), 210)},
        j1939.PGN_DD1: {96: min(max(truth.fuel_pct, 0.0), 100.0)},
        j1939.PGN_VDHR: {917: max(truth.odometer_m, 0.0)},
        j1939.PGN_LFE1: {183: 1.0 + rpm * 0.01},
        j1939.PGN_VEP1: {168: BATTERY_V},
        j1939.PGN_AMB: {171: AMBIENT_C},
        j1939.PGN_TCO1: {1624: speed_kmh, 1611: int(moving)},
        j1939.PGN_TD: j1939.td_values(when),
        j1939.PGN_DC1: {1821: 0 if doors else 2, 1820: 0, 3411: 1},
        # Doors 1 and 2 (front and middle) open together at a stop.
        j1939.PGN_DC2: {3412: 0, 3413: int(doors), 3414: 1, 3415: 0, 3416: int(doors), 3417: 1},
    }


def frames_for(
    truth: VehicleTruth, *, sa: int = 0x00, faults: Faults | None = None
) -> list[tuple[int, bytes]]:
    """One cycle of bus-FMS frames (id, data) for `truth`, with `faults` applied to the values."""
    faults = faults or Faults()
    frames: list[tuple[int, bytes]] = []
    for pgn, values in _values(truth).items():
        if faults.error_values:
            frames.append(j1939.encode(pgn, {}, sa, errors=values.keys()))
        else:
            frames.append(j1939.encode(pgn, values, sa))
    # Block 2 of the tell-tales: stop request (38) off, kneeling (44) while the doors are open.
    frames += j1939.encode_telltales({38: 0, 44: int(truth.doors_open)}, sa)
    if faults.na_values:
        frames = [(ident, b"\xff" * 8) for ident, _ in frames]
    return frames


def cycle_frames(
    truth: VehicleTruth,
    *,
    sa: int = 0x00,
    faults: Faults | None = None,
    vin: str | None = None,
    cycle: int = 0,
) -> list[tuple[int, bytes]]:
    """Everything the gateway sends in cycle number `cycle`: signals, DM1, VIN, burst padding."""
    faults = faults or Faults()
    if faults.silent:
        return []
    frames = frames_for(truth, sa=sa, faults=faults)
    if faults.dm1:
        lamps = Lamps(mil=False, red_stop=False, amber_warning=True, protect=False)
        frames += j1939.encode_dm1(lamps, faults.dm1, sa)
    if vin is not None and cycle % VIN_EVERY_CYCLES == 0:
        frames += j1939.encode_vin(vin, sa)
    if faults.burst_fps is not None and len(frames) < faults.burst_fps:
        base = list(frames)
        while len(frames) < faults.burst_fps:
            frames += base[: faults.burst_fps - len(frames)]
    return frames


class CanSimulator:
    """Sends a simulated bus-FMS gateway's frames onto a python-can bus."""

    def __init__(
        self,
        bus: can.BusABC,
        faults: Faults | None = None,
        sa: int = 0,
        *,
        vin: str | None = None,
    ) -> None:
        self.bus = bus
        self.faults = faults or Faults()
        self.sa = sa
        self.vin = vin
        self.cycles = 0

    def send_frames(self, frames: list[tuple[int, bytes]]) -> int:
        """Send (id, data) frames as extended data frames; return how many."""
        for ident, data in frames:
            self.bus.send(can.Message(arbitration_id=ident, data=data, is_extended_id=True))
        return len(frames)

    def send_truth(self, truth: VehicleTruth) -> int:
        """Send one cycle for `truth` (+ DM1 and VIN as configured); return frames sent."""
        frames = cycle_frames(
            truth, sa=self.sa, faults=self.faults, vin=self.vin, cycle=self.cycles
        )
        self.cycles += 1
        return self.send_frames(frames)

    def send_burst(self, seconds: float, fps: int = 1850) -> int:
        """Send frames at `fps` for `seconds` of wall time (a fully loaded bus); return count."""
        truth = next(placeholder_drive(time.time()))
        frames = frames_for(truth, sa=self.sa)
        total = round(seconds * fps)
        start = time.monotonic()
        sent = 0
        while sent < total:
            # Catch up with the schedule, then yield the CPU for a millisecond.
            due = min(int((time.monotonic() - start) * fps) + 1, total)
            while sent < due:
                ident, data = frames[sent % len(frames)]
                self.bus.send(can.Message(arbitration_id=ident, data=data, is_extended_id=True))
                sent += 1
            if sent < total:
                time.sleep(0.001)
        return sent


def replay_candump(path: str | Path, bus: can.BusABC, speed: float = 1.0) -> int:
    """Send the frames of a candump log onto `bus`, paced by their timestamps / `speed`.

    `speed` <= 0 sends as fast as possible. Lines that are not frames are skipped.
    Return the number of frames sent.
    """
    sent = 0
    t0: float | None = None
    wall0 = time.monotonic()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            frame = parse_candump(line)
            if frame is None:
                continue
            if t0 is None:
                t0 = frame.t
            if speed > 0:
                delay = (frame.t - t0) / speed - (time.monotonic() - wall0)
                if delay > 0:
                    time.sleep(delay)
            msg = can.Message(
                arbitration_id=frame.can_id, data=frame.data, is_extended_id=frame.extended
            )
            bus.send(msg)
            sent += 1
    return sent


def placeholder_drive(
    start_t: float,
    *,
    speed_kmh: float = 30.0,
    hz: float = 1.0,
    drive_s: float = 100.0,
    dwell_s: float = 20.0,
    lat: float = -16.9186,
    lon: float = 145.7781,
) -> Iterator[VehicleTruth]:
    """An endless constant-speed drive east from Cairns with a stop every `drive_s` seconds.

    Stand-in until `hw_sim.drive` supplies real routes; consistent enough for the CAN sim.
    """
    dt = 1.0 / hz
    t, odo, fuel = start_t, 0.0, 80.0
    period = drive_s + dwell_s
    i = 0
    while True:
        phase = (t - start_t) % period
        stopped = phase >= drive_s
        v = 0.0 if stopped else speed_kmh / 3.6
        yield VehicleTruth(
            t=t,
            lat=lat,
            lon=lon + odo / (111_320.0 * math.cos(math.radians(lat))),
            speed_mps=v,
            heading_deg=90.0,
            odometer_m=odo,
            doors_open=stopped,
            engine_rpm=650.0 if stopped else min(650.0 + speed_kmh * 25.0, 2200.0),
            coolant_c=min(40.0 + (t - start_t) / 6.0, 85.0),
            fuel_pct=max(fuel, 0.0),
            stop_index=int((t - start_t) // period) if stopped else None,
        )
        i += 1
        t = start_t + i * dt
        odo += v * dt
        fuel -= 0.0005 * dt
