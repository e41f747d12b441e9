"""A simulated bus: the hw_sim GPS on a pty and the hw_sim CAN on a virtual channel, driving a
GTFS trip, with the real agent reading both through its production code paths.

The bus drives in the simulator's city traffic (hw_sim/traffic.py: rush hours, slow junctions,
dwell by stop and hour, seeded), its trip's timetable laid on the clock from where it starts,
so the stop events it records give central's prediction model something to learn.

python-can's `virtual` interface only connects buses inside one process, so the CAN simulator
and the agent share this process; the GPS crosses a real pty, read by pyserial.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import can

from hw_sim.can_sim import CanSimulator
from hw_sim.drive import Drive
from hw_sim.gps_sim import GpsSimulator, open_pty, run_gps_pty
from hw_sim.traffic import SimStop, TrafficModel, drive_inputs
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
from onboard.portal.settings import PortalSection
from protocols.gtfs.feed import Feed, read_feed

log = logging.getLogger("busfleet.simbus")

DEFAULT_GTFS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"
TRAFFIC_SEED = 17  # the city's: every simulated bus drives the same traffic


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
    traffic_seed: int | None = TRAFFIC_SEED  # None: the drive's own random traffic only
    # Many simulated buses share one machine: display and driver terminal on these ports of
    # 127.0.0.1 (0: any free one, logged); the Wi-Fi portal only with a port (`portal_section`).
    display_port: int = 0
    driver_port: int = 0
    portal_port: int | None = None


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
        display=DisplaySection(port=spec.display_port),
        driver=DriverSection(port=spec.driver_port),
        portal=portal_section(spec.portal_port),
        # The bus tracks the trip central assigns it (the demo assigns the one it drives).
        journey=JourneySection(gtfs=str(spec.gtfs) if spec.local_feed else ""),
    )


def portal_section(port: int | None) -> PortalSection:
    """The passenger Wi-Fi portal on 127.0.0.1:`port`, as a browser on this machine reaches
    it (its address is the Host it answers as itself), with the null firewall: a simulated bus
    has no passenger network to enforce anything on. None: no portal."""
    if port is None:
        return PortalSection()
    return PortalSection(
        enabled=True,
        listen_host="127.0.0.1",
        listen_port=port,
        address="127.0.0.1",
        firewall="null",
    )


def make_drive(feed: Feed, spec: SimBusSpec, start_t: float) -> Drive:
    path, stops = feed.trip_path(spec.trip_id)
    start_m = path.length_m * spec.start_fraction
    factors, dwells = None, None
    if spec.traffic_seed is not None and stops:
        tz = feed.timezone or "UTC"
        timed = timetable_from(feed, spec.trip_id, start_t, start_m)
        day = dt.datetime.fromtimestamp(start_t, _zone(tz)).date()
        traffic = TrafficModel(seed=spec.traffic_seed, tz=tz)
        key = f"{spec.trip_id}:{spec.bus_id}"
        factors, dwells = drive_inputs(traffic, timed, trip_key=key, day=day)
    return Drive(
        path,
        [(stop.stop_id, dist) for stop, dist in stops],
        start_t=start_t,
        seed=spec.seed,
        start_dist_m=start_m,
        segment_factors=factors,
        dwells_s=dwells,
    )


def timetable_from(feed: Feed, trip_id: str, start_t: float, start_m: float) -> list[SimStop]:
    """The trip's calls as unix times, placed so that the bus is on time where it starts
    (`start_m` along its path at `start_t`): the traffic model's time of day."""
    _, placed = feed.trip_path(trip_id)
    calls = feed.stop_times(trip_id)
    dists = [d for _, d in placed]
    offset = float(calls[0].departure_s if start_m <= dists[0] else calls[-1].arrival_s)
    for k in range(1, len(calls)):
        if dists[k - 1] <= start_m <= dists[k]:  # between stop k-1 and k: the share driven
            a, b = calls[k - 1], calls[k]
            share = (start_m - dists[k - 1]) / max(1.0, dists[k] - dists[k - 1])
            offset = a.departure_s + share * (b.arrival_s - a.departure_s)
            break
    base = start_t - offset
    return [
        SimStop(c.stop_id, base + c.arrival_s, base + c.departure_s, dist)
        for c, (_, dist) in zip(calls, placed, strict=True)
    ]


def _zone(tz: str) -> dt.tzinfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


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
