"""The child process of bench/agent_inputs.py: a real agent under input load, or the load alone.

python-can's `virtual` bus only connects buses inside one process, so the CAN feeder, the NMEA
feeder and the agent share this process; the parent measures its CPU time and RSS.

- CAN: a bus-FMS gateway cycle per second from hw_sim (signals, DM1 with two DTCs by TP.BAM,
  the VIN every minute), padded to `--can-fps` frames per second like a fully loaded bus, sent
  on a virtual channel in slices every 5 ms.
- GPS: hw_sim's GpsSimulator at `--nmea-hz` on a pty (RMC, GGA, VTG every epoch, GSA and GSV
  once a second), read by the agent's serial source with pyserial.
- `--mode feeders` runs both feeders and no agent: the cost to subtract.

Prints `READY` once warmed up, and at SIGTERM one JSON line with what went through.

Run by bench/agent_inputs.py; by hand:
  .venv/bin/python bench/agent_load.py --mode agent --mqtt-port 1883 --data-dir /tmp/x
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import can

from hw_sim.can_sim import Faults, cycle_frames, placeholder_drive
from hw_sim.drive import Drive
from hw_sim.gps_sim import GpsSimulator, open_pty, run_gps_pty
from hw_sim.pty import WriteStats
from onboard.agent import Agent
from onboard.config import (
    AgentConfig,
    BusSection,
    CanSection,
    DisplaySection,
    DriverSection,
    GpsSection,
    MqttSection,
)
from onboard.portal.settings import PortalSection
from protocols.geo import Polyline, offset_m
from protocols.j1939.decode import Dtc

CAIRNS = (-16.9186, 145.7781)
VIN = "YV3R8R624EA123456"
SLICE_S = 0.005


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=("agent", "feeders"), required=True)
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--data-dir", type=Path, required=True, help="the agent's outbox goes here")
    p.add_argument("--can-fps", type=int, default=2000, help="CAN frames per second (2000)")
    p.add_argument("--nmea-hz", type=float, default=10.0, help="GPS epochs per second (10)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before READY (5)")
    # The local web sites, for bench/agent_inputs.py's phones, display and driver terminal.
    p.add_argument("--portal-port", type=int, default=0, help="run the portal here (0: off)")
    p.add_argument("--display-port", type=int, default=DisplaySection().port)
    p.add_argument("--driver-port", type=int, default=DriverSection().port)
    return p.parse_args(argv)


async def feed_can(bus: can.BusABC, fps: int, stats: dict[str, int]) -> None:
    """Send one gateway cycle per second, padded to `fps` frames, spread over the second."""
    truths = placeholder_drive(time.time())
    dtcs = [Dtc(spn=110, fmi=0, occurrence=1), Dtc(spn=100, fmi=1, occurrence=3)]
    faults = Faults(burst_fps=fps, dm1=dtcs)
    start = time.monotonic()
    sent = 0
    cycle = -1
    frames: list[tuple[int, bytes]] = []
    while True:
        elapsed = time.monotonic() - start
        if int(elapsed) != cycle:
            cycle = int(elapsed)
            frames = cycle_frames(next(truths), faults=faults, vin=VIN, cycle=cycle)
            base = cycle * fps
            if sent < base:  # a slow second is not made up in a burst, but it is counted
                stats["can_late"] += base - sent
                sent = base
        due = min(int(elapsed * fps), (cycle + 1) * fps)
        while sent < due:
            ident, data = frames[(sent - cycle * fps) % len(frames)]
            bus.send(can.Message(arbitration_id=ident, data=data, is_extended_id=True))
            sent += 1
            stats["can_sent"] += 1
        await asyncio.sleep(SLICE_S)


def gps_simulator(rate_hz: float) -> GpsSimulator:
    line = Polyline([CAIRNS, offset_m(*CAIRNS, 0.0, 50_000.0)])
    stops = [(f"S{i}", i * 500.0) for i in range(101)]
    drive = Drive(line, stops, start_t=time.time(), seed=7, start_dist_m=50.0)
    return GpsSimulator(drive, rate_hz=rate_hz, seed=7)


def agent_config(args: argparse.Namespace, device: str, channel: str) -> AgentConfig:
    return AgentConfig(
        bus=BusSection(id="bench-001", data_dir=str(args.data_dir)),
        mqtt=MqttSection(
            host=args.mqtt_host, port=args.mqtt_port, backoff_max_s=5.0, insecure_dev_broker=True
        ),
        gps=GpsSection(source="serial", device=device, baud=115200),
        can=CanSection(interface="virtual", channel=channel),
        display=DisplaySection(port=args.display_port),
        driver=DriverSection(port=args.driver_port),
        portal=PortalSection(
            enabled=args.portal_port > 0,
            listen_host="127.0.0.1",
            listen_port=args.portal_port,
            address="127.0.0.1",
        ),
    )


def fixes_decoded(agent: Agent | None) -> int:
    """Fixes the agent's GPS decoded (its serial source's decoder, whatever may wrap it)."""
    nmea = getattr(getattr(agent.gps if agent else None, "decoder", None), "stats", None)
    return int(getattr(nmea, "fixes", 0))


def agent_counters(agent: Agent | None) -> dict[str, object]:
    if agent is None:
        return {}
    return {"fixes": fixes_decoded(agent), **agent.counters()}


async def main(args: argparse.Namespace) -> dict[str, object]:
    stats = {"can_sent": 0, "can_late": 0}
    gps_stats = WriteStats()
    master, slave = open_pty()
    channel = f"bench-{os.getpid()}"
    sender = can.Bus(interface="virtual", channel=channel)
    agent: Agent | None = None
    counters: dict[str, object] = {}
    if args.mode == "agent":
        agent = Agent(agent_config(args, slave, channel))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(feed_can(sender, args.can_fps, stats), name="can-feeder"),
                tg.create_task(
                    run_gps_pty(
                        gps_simulator(args.nmea_hz),
                        master,
                        rate_hz=args.nmea_hz,
                        truth_log=None,
                        stats=gps_stats,
                    ),
                    name="gps-feeder",
                ),
            ]
            if agent is not None:
                tasks.append(tg.create_task(agent.run(), name="agent"))
            await asyncio.sleep(args.warmup)
            print("READY", flush=True)
            ready_at, sent0, written0 = time.monotonic(), stats["can_sent"], gps_stats.bytes_written
            fixes0 = fixes_decoded(agent)
            await stop.wait()
            window = time.monotonic() - ready_at
            counters = agent_counters(agent)  # before the agent closes its outbox
            # What went through while the parent measured, per second.
            counters["window_can_fps"] = round((stats["can_sent"] - sent0) / window, 1)
            counters["window_nmea_bytes_per_s"] = round(
                (gps_stats.bytes_written - written0) / window, 1
            )
            if agent is not None:
                counters["window_fixes_per_s"] = round((fixes_decoded(agent) - fixes0) / window, 2)
            for task in tasks:
                task.cancel()
    finally:
        sender.shutdown()
        os.close(master)
    out: dict[str, object] = {
        "mode": args.mode,
        "can_sent": stats["can_sent"],
        "can_late": stats["can_late"],
        "nmea_sentences_written": gps_stats.sentences_written,
        "nmea_sentences_dropped": gps_stats.sentences_dropped,
    }
    out.update(counters)
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    result: dict[str, object] = {}
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(main(parse_args()))
    print(json.dumps(result), flush=True)
