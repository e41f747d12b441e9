"""`busfleet sim ...`: simulated hardware, alone or as a whole simulated bus."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from busfleet.commands import can as can_commands
    from hw_sim.gps_sim import add_gps_sim_arguments, main_sim_gps

    p = sub.add_parser(
        "sim",
        help="simulated GPS, CAN and whole buses",
        description="Simulated hardware for development and tests.",
    )
    ssub = p.add_subparsers(dest="sim_command", metavar="COMMAND", required=True)

    gps = ssub.add_parser(
        "gps",
        help="NMEA from a bus driving a GTFS trip, on a pty",
        description="Drive a bus along a GTFS trip's shape and write NMEA "
        "(RMC, GGA, VTG, GSA, GSV) to a pseudo-terminal at 1-10 Hz.",
    )
    add_gps_sim_arguments(gps)
    gps.set_defaults(func=main_sim_gps)

    can = ssub.add_parser(
        "can",
        help="bus-FMS CAN frames of a driving bus",
        description="Emit bus-FMS (J1939) frames consistent with a drive on a "
        "python-can channel and/or into a candump log.",
    )
    can_commands.add_sim_arguments(can)
    can.set_defaults(func=can_commands.run_sim)

    bus = ssub.add_parser(
        "bus",
        help="a whole simulated bus: GPS + CAN sims and a real agent",
        description="Run the real agent on simulated GPS (pty) and CAN "
        "(virtual channel) while it drives a GTFS trip.",
    )
    bus.add_argument("--id", required=True, help="bus id (also its MQTT identity)")
    bus.add_argument("--trip", help="GTFS trip_id (default: a demo trip)")
    bus.add_argument("--gtfs", type=Path, help="GTFS feed (default: the bundled Cairns feed)")
    bus.add_argument("--data-dir", type=Path, required=True, help="the agent's data directory")
    bus.add_argument("--mqtt-host", default="127.0.0.1")
    bus.add_argument("--mqtt-port", type=int, default=1883)
    bus.add_argument("--mqtt-protocol", type=int, choices=(4, 5), default=5)
    bus.add_argument("--rate", type=float, default=1.0, help="GPS rate in Hz (1-10)")
    bus.add_argument("--seed", type=int, default=1)
    bus.add_argument(
        "--start-fraction", type=float, default=0.0, help="where along the trip to start, 0..1"
    )
    bus.add_argument(
        "--no-local-feed",
        dest="local_feed",
        action="store_false",
        help="give the agent no copy of the feed: it tracks the timetable central publishes"
        " (the simulator still drives the --gtfs feed's trip)",
    )
    bus.add_argument("--truth-log", type=Path, help="write the simulator's ground truth here")
    bus.add_argument("--display-port", type=int, default=0, help="passenger display (0: any free)")
    bus.add_argument("--driver-port", type=int, default=0, help="driver terminal (0: any free)")
    bus.add_argument(
        "--portal-port", type=int, help="run the Wi-Fi portal on 127.0.0.1:PORT (null firewall)"
    )
    bus.add_argument("--log-level", default="INFO")
    bus.set_defaults(func=run_bus)


def run_bus(args: argparse.Namespace) -> int:
    from busfleet.logs import setup_logging
    from busfleet.runner import run_service
    from busfleet.simbus import DEFAULT_GTFS, SimBusSpec, run_sim_bus
    from protocols.gtfs.feed import demo_trips, read_feed

    setup_logging(args.id, args.log_level)
    gtfs = args.gtfs or DEFAULT_GTFS
    feed = read_feed(gtfs)
    trip = args.trip or demo_trips(feed, 1)[0]
    spec = SimBusSpec(
        bus_id=args.id,
        trip_id=trip,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        mqtt_protocol=args.mqtt_protocol,
        data_dir=args.data_dir,
        rate_hz=args.rate,
        seed=args.seed,
        start_fraction=args.start_fraction,
        truth_log=args.truth_log,
        gtfs=gtfs,
        local_feed=args.local_feed,
        display_port=args.display_port,
        driver_port=args.driver_port,
        portal_port=args.portal_port,
    )
    run_service(run_sim_bus(spec, feed))
    return 0
