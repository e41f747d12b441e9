"""A simulated bus: the hw_sim GPS on a pty and the hw_sim CAN on a virtual channel, driving a
GTFS trip, with the real agent reading both through its production code paths.

python-can's `virtual` interface only connects buses inside one process, so the CAN simulator
and the agent share this process; the GPS crosses a real pty, read by pyserial.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import can

from hw_sim.can_sim import CanSimulator
from hw_sim.drive import Drive
from hw_sim.gps_sim import GpsSimulator, open_pty, run_gps_pty
from hw_sim.truth import VehicleTruth
from onboard.agent import Agent
from onboard.config import (
    AgentConfig,
    BusSection,
    CanSection,
    DisplaySection,
    DriverSection,
    GpsSection,
    JourneySection,
    MqttSection,
    TelemetrySection,
)
from onboard.journey.runtime import JourneyRuntime
from protocols.gtfs.feed import Feed, read_feed

log = logging.getLogger("busfleet.simbus")

DEFAULT_GTFS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"


@dataclass(frozen=True, slots=True)
class SimBusSpec:
    bus_id: str
    trip_id: str
    mqtt_host: str
    mqtt_port: int
    data_dir: Path
    mqtt_protocol: int = 5
    rate_hz: float = 1.0
    seed: int = 1
    start_fraction: float = 0.0  # where along the trip to start (0 = first stop)
    truth_log: Path | None = None
    gtfs: Path = DEFAULT_GTFS
    # True: the agent tracks on the simulator's feed (agent.toml's `[journey] gtfs` bootstrap).
    # False: the agent has no copy and waits for the timetable central publishes, as a new bus.
    local_feed: bool = True


def agent_config(spec: SimBusSpec, gps_device: str, can_channel: str) -> AgentConfig:
    return AgentConfig(
        bus=BusSection(id=spec.bus_id, data_dir=str(spec.data_dir)),
        mqtt=MqttSection(
            host=spec.mqtt_host,
            port=spec.mqtt_port,
            protocol=spec.mqtt_protocol,
            backoff_max_s=5.0,
            insecure_dev_broker=True,  # the simulator's development broker speaks no TLS
        ),
        gps=GpsSection(source="serial", device=gps_device, baud=9600),
        can=CanSection(interface="virtual", channel=can_channel),
        # The demo shows buses live: one message a second instead of the cellular default.
        telemetry=TelemetrySection(send_every_s=1.0),
        # Many simulated buses share one machine: each display takes a free port (logged).
        display=DisplaySection(port=0),
        driver=DriverSection(port=0),
        # The bus tracks the trip central assigns it (the demo assigns the one it drives).
        journey=JourneySection(gtfs=str(spec.gtfs) if spec.local_feed else ""),
    )


def make_drive(feed: Feed, spec: SimBusSpec, start_t: float) -> Drive:
    path, stops = feed.trip_path(spec.trip_id)
    return Drive(
        path,
        [(stop.stop_id, dist) for stop, dist in stops],
        start_t=start_t,
        seed=spec.seed,
        start_dist_m=path.length_m * spec.start_fraction,
    )


async def run_sim_bus(spec: SimBusSpec, feed: Feed | None = None) -> None:
    """Drive the trip with a real agent on board until cancelled (or the trip ends)."""
    feed = feed or read_feed(spec.gtfs)
    drive = make_drive(feed, spec, time.time())
    master_fd, slave_path = open_pty()
    channel = f"simbus-{spec.bus_id}-{os.getpid()}"
    can_bus = can.Bus(interface="virtual", channel=channel)
    can_sim = CanSimulator(can_bus)

    def on_truth(truth: VehicleTruth) -> None:
        can_sim.send_truth(truth)

    gps = GpsSimulator(drive, rate_hz=spec.rate_hz, seed=spec.seed)
    agent = Agent(agent_config(spec, slave_path, channel))
    if spec.local_feed:
        agent.journey = JourneyRuntime(feed)  # the feed read above: no second parse in the agent
        agent.journey_local = True
    log.info("%s drives trip %s (gps %s, can %s)", spec.bus_id, spec.trip_id, slave_path, channel)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(agent.run(), name="agent")
            tg.create_task(
                run_gps_pty(
                    gps,
                    master_fd,
                    rate_hz=spec.rate_hz,
                    truth_log=spec.truth_log,
                    on_truth=on_truth,
                ),
                name="gps-sim",
            )
    finally:
        can_bus.shutdown()
        os.close(master_fd)
