"""One simulated bus for the chaos test, in a process of its own: `python -m tests.chaos_bus`.

As `busfleet sim bus` (busfleet/simbus.py) does: the hw_sim GPS writes NMEA to a pty that the
production agent reads with its serial backend, and the hw_sim CAN gateway sends bus-FMS frames
on a python-can virtual channel in this process (virtual CAN only connects within a process).
Unlike `sim bus`, the agent runs a provisioned agent.toml (TLS, its own password), as a bus on
the production broker does; the route is a straight line, no GTFS (nothing here is about it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

import can

from hw_sim.can_sim import CanSimulator
from hw_sim.drive import Drive
from hw_sim.gps_sim import GpsSimulator, open_pty, run_gps_pty
from hw_sim.truth import VehicleTruth
from onboard.agent import Agent
from onboard.config import CanSection, GpsSection, load_config
from protocols.geo import Polyline, offset_m

CAIRNS = (-16.9186, 145.7781)


async def run(config_path: Path, seed: int, rate_hz: float) -> None:
    config = load_config(config_path)
    master, slave = open_pty()
    channel = f"chaos-{config.bus.id}-{os.getpid()}"
    can_bus = can.Bus(interface="virtual", channel=channel)
    can_sim = CanSimulator(can_bus)
    config = dataclasses.replace(
        config,
        gps=GpsSection(source="serial", device=slave, baud=115200),
        can=CanSection(interface="virtual", channel=channel),
    )
    line = Polyline([CAIRNS, offset_m(*CAIRNS, 0.0, 50_000.0)])
    stops = [(f"S{i}", i * 500.0) for i in range(101)]
    drive = Drive(line, stops, start_t=time.time(), seed=seed, start_dist_m=50.0)
    gps = GpsSimulator(drive, rate_hz=rate_hz, seed=seed)

    def on_truth(truth: VehicleTruth) -> None:
        can_sim.send_truth(truth)

    agent = Agent(config)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(agent.run(), name="agent")
            tg.create_task(
                run_gps_pty(gps, master, rate_hz=rate_hz, truth_log=None, on_truth=on_truth),
                name="gps-sim",
            )
    finally:
        can_bus.shutdown()
        os.close(master)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="the bus's agent.toml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=2.0, help="GPS epochs per second")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.config, args.seed, args.rate))


if __name__ == "__main__":
    main()
