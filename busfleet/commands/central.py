"""`busfleet central ...`: the city-hall service, the dashboard and dispatch tools."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from central.config import CentralConfig


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="central TOML file (see deploy/central.example.toml)")
    p.add_argument("--db", help="SQLite file (overrides the config)")
    p.add_argument("--mqtt-host", help="broker host (overrides the config)")
    p.add_argument("--mqtt-port", type=int, help="broker port (overrides the config)")
    p.add_argument("--mqtt-username", help="MQTT user (overrides the config)")
    p.add_argument("--mqtt-protocol", type=int, choices=(4, 5), help="MQTT 5, or 4 for 3.1.1")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "central",
        help="city-hall service, dashboard and dispatch tools",
        description="The city-hall side of busfleet.",
    )
    csub = p.add_subparsers(dest="central_command", metavar="COMMAND", required=True)

    serve = csub.add_parser(
        "serve",
        help="ingest telemetry, keep fleet state",
        description="Run the central service: subscribes to every bus, "
        "stores telemetry exactly once in SQLite, keeps fleet state and "
        "publishes it for dashboards.",
    )
    _connection_args(serve)
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(func=serve_cmd)

    dash = csub.add_parser(
        "dash",
        help="the dispatcher dashboard (Textual)",
        description="Open the dispatcher dashboard: the fleet live. Keys: arrows move, q quits.",
    )
    _connection_args(dash)
    dash.set_defaults(func=dash_cmd)

    assign = csub.add_parser(
        "assign",
        help="assign a bus to a trip, block or route",
        description="Push an assignment to a bus through its desired state "
        "(versioned, retained: the bus gets it whenever it is connected).",
    )
    _connection_args(assign)
    assign.add_argument("bus", help="bus id")
    group = assign.add_argument_group("what to drive (at least one)")
    group.add_argument("--trip", help="GTFS trip_id")
    group.add_argument("--block", help="GTFS block_id")
    group.add_argument("--route", help="GTFS route_id (trip matched on board)")
    assign.set_defaults(func=assign_cmd)


def config_from(args: argparse.Namespace) -> CentralConfig:
    import dataclasses

    from central.config import CentralConfig, load_central_config

    config = load_central_config(args.config) if args.config else CentralConfig()
    overrides = {
        "db": args.db,
        "mqtt_host": args.mqtt_host,
        "mqtt_port": args.mqtt_port,
        "mqtt_username": args.mqtt_username,
        "mqtt_protocol": args.mqtt_protocol,
    }
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


def serve_cmd(args: argparse.Namespace) -> int:
    from busfleet.logs import setup_logging
    from busfleet.runner import run_service
    from central.config import CentralConfigError
    from central.service import CentralService

    try:
        config = config_from(args)
    except CentralConfigError as exc:
        print(f"busfleet central serve: {exc}", file=sys.stderr)
        return 2
    setup_logging("central", args.log_level)
    run_service(CentralService(config).run())
    return 0


def dash_cmd(args: argparse.Namespace) -> int:
    import dataclasses

    from central.dashboard.app import create_app

    config = config_from(args)
    if args.mqtt_username is None and not args.config:
        config = dataclasses.replace(config, mqtt_username="dispatcher")
    create_app(config).run()
    return 0


def assign_cmd(args: argparse.Namespace) -> int:
    from central.assign import assign
    from protocols.errors import TopicError
    from protocols.schemas import Assignment

    if not (args.trip or args.block or args.route):
        print("busfleet central assign: give --trip, --block or --route", file=sys.stderr)
        return 2
    config = config_from(args)
    try:
        version = asyncio.run(
            assign(
                config,
                args.bus,
                Assignment(trip_id=args.trip, block_id=args.block, route_id=args.route),
            )
        )
    except TopicError as exc:
        print(f"busfleet central assign: {exc}", file=sys.stderr)
        return 2
    print(f"{args.bus}: desired state version {version} published")
    return 0
