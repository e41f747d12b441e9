"""The agent's CAN replay source: a candump log drives the vehicle state at its own pace."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from hw_sim.can_sim import frames_for
from hw_sim.truth import VehicleTruth
from onboard.vehicle.can_input import CanInput
from protocols.j1939.candump import format_candump_line

T0 = 1_795_000_000.0  # a date the TD message can carry


def truth(t: float, speed_mps: float, doors_open: bool) -> VehicleTruth:
    return VehicleTruth(
        t=t,
        lat=-16.9,
        lon=145.7,
        speed_mps=speed_mps,
        heading_deg=0.0,
        odometer_m=1000.0 + (t - T0),
        doors_open=doors_open,
        engine_rpm=900.0,
        coolant_c=80.0,
        fuel_pct=50.0,
    )


async def test_a_candump_log_replays_into_vehicle_state_and_door_events(tmp_path: Path) -> None:
    lines = []
    for i in range(6):  # 0.6 s of log: moving, then standing with the doors open
        moving = i < 3
        for can_id, data in frames_for(truth(T0 + i * 0.1, 10.0 if moving else 0.0, not moving)):
            lines.append(format_candump_line(T0 + i * 0.1, "can0", can_id, data))
    log = tmp_path / "drive.log"
    log.write_text("\n".join(lines) + "\n")
    events: list[str] = []
    source = CanInput("replay", str(log), on_event=lambda e: events.append(e.kind))
    task = asyncio.create_task(source.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if "doors_opened" in events:
                break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert source.frames >= len(lines) // 2
    assert "doors_opened" in events
    assert source.state.engine_rpm == 900.0
    assert source.state.odometer_m is not None and source.state.odometer_m >= 1000.0
