"""`busfleet central ...`: the city-hall service, the dashboard and dispatch tools."""

from __future__ import annotations

import argparse
import sqlite3
import sys

from busfleet.commands._common import ask_central, config_from, connection_args
from protocols.requests import COMMAND_NAMES


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
        "stores telemetry exactly once in its database (a SQLite file, or PostgreSQL with "
        "--db postgresql://user@host:port/dbname), keeps fleet state and publishes it for "
        "dashboards. Several instances may share one PostgreSQL database (--group).",
    )
    connection_args(serve)
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--group",
        help="run as one instance of group G: each stores its share of the ingest (MQTT 5 "
        "shared subscription); one at a time, by a lease in the database, keeps the fleet view "
        "and alarms and answers dispatchers (each instance needs its own --client-id)",
    )
    serve.add_argument(
        "--client-id",
        help="MQTT client id and presence name (default: the MQTT username; deploy/'s broker "
        "forces the username, so each worker needs an account of its own)",
    )
    serve.add_argument(
        "--http-port",
        type=int,
        help="HTTP port (GTFS-Realtime, media, /healthz); 0 = none (overrides the config)",
    )
    serve.set_defaults(func=serve_cmd)

    dash = csub.add_parser(
        "dash",
        help="the dispatcher dashboard (Textual)",
        description="Open the dispatcher dashboard: the fleet, alarms, a map, reports; assign "
        "buses, playlists and messages, send commands. Keys: ? lists every key, ctrl+p opens "
        "the command palette, q quits.",
    )
    connection_args(dash)
    dash.add_argument(
        "--name",
        help="your dispatcher account on the broker (its MQTT username, as --mqtt-username): "
        "the name your requests and acknowledgements carry, proven by the broker (default: the "
        "config's mqtt_username, else dispatcher)",
    )
    web = dash.add_argument_group("in a browser (textual-serve; it has NO login of its own)")
    web.add_argument(
        "--web",
        action="store_true",
        help="serve the dashboard to browsers: one dashboard process per browser session, all "
        "as this broker identity; put a reverse proxy with TLS and a login in front "
        '(deploy/README.md, "The dashboard in a browser")',
    )
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    web.add_argument("--port", type=int, default=8085, help="port to bind (default 8085)")
    web.add_argument(
        "--public-url",
        help="the URL browsers use, e.g. https://dash.city.example behind the proxy (default "
        "http://HOST:PORT); only pages of it may open a session",
    )
    web.add_argument(
        "--sessions",
        type=int,
        default=1,
        help="browser sessions at once (default 1): each is a dashboard process under the same "
        "broker account, and deploy/'s broker gives an account one connection",
    )
    dash.set_defaults(func=dash_cmd)

    assign = csub.add_parser(
        "assign",
        help="assign a bus to a trip, block or route",
        description="Push an assignment to a bus through its desired state "
        "(versioned, retained: the bus gets it whenever it is connected).",
    )
    connection_args(assign)
    assign.add_argument("bus", help="bus id")
    group = assign.add_argument_group("what to drive (at least one)")
    group.add_argument("--trip", help="GTFS trip_id")
    group.add_argument("--block", help="GTFS block_id")
    group.add_argument("--route", help="GTFS route_id (trip matched on board)")
    assign.set_defaults(func=assign_cmd)

    command = csub.add_parser(
        "command",
        help="send a command to a bus (resend, announce, restart)",
        description="Send a command with an id and an expiry; the bus answers ok, failed or "
        "expired. Examples: `command bus-01 announce --arg de='Bitte vorne einsteigen'` "
        "(to several buses at once: `central announce`), "
        "`command bus-01 resend --arg since=1795000000`, `command bus-01 restart`.",
    )
    connection_args(command)
    command.add_argument("bus", help="bus id")
    command.add_argument("name", choices=[n for n in COMMAND_NAMES if n != "driver_message"])
    command.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an argument (numbers are sent as numbers)",
    )
    command.add_argument(
        "--ttl", type=float, default=300.0, help="seconds until the command expires (default 300)"
    )
    command.set_defaults(func=command_cmd)

    commands = csub.add_parser(
        "commands",
        help="list commands and their results",
        description="List the commands sent to buses with their status: "
        "sent, ok, failed or expired.",
    )
    connection_args(commands)
    commands.add_argument("--bus", help="only this bus")
    commands.set_defaults(func=commands_cmd)

    from busfleet.commands import ads  # advertising: media, playlist, report

    ads.register_central(csub, connection_args)

    from busfleet.commands import dispatch  # timetable import, passenger messages

    dispatch.register_central(csub, connection_args)

    from busfleet.commands import timetable  # timetable versions, groups of buses

    timetable.register_central(csub, connection_args)

    from busfleet.commands import divert  # diversions of a route

    divert.register_central(csub, connection_args)

    from busfleet.commands import driver  # messages to drivers, their answers and alarms

    driver.register_central(csub, connection_args)

    from busfleet.commands import config  # agent settings pushed to buses

    config.register_central(csub, connection_args)

    from busfleet.commands import retention  # how long central keeps each kind of data

    retention.register_central(csub, connection_args)

    from busfleet.commands import logs  # a bus's own log, read remotely

    logs.register_central(csub, connection_args)

    from busfleet.commands import release_central  # software rollouts (issue 16)

    release_central.register_central(csub, connection_args)

    from busfleet.commands import health  # the buses' health reports (issue 16)

    health.register_central(csub, connection_args)

    from busfleet.commands import announce  # live announcements from city hall (issue 17)

    announce.register_central(csub, connection_args)

    from busfleet.commands import people  # roles and the audit log (issue 18)

    people.register_central(csub, connection_args)


def serve_cmd(args: argparse.Namespace) -> int:
    import dataclasses

    from busfleet.logs import setup_logging
    from busfleet.runner import run_service
    from central.config import CentralConfigError
    from central.service.service import CentralService

    try:
        config = config_from(args)
    except CentralConfigError as exc:
        print(f"busfleet central serve: {exc}", file=sys.stderr)
        return 2
    if args.group and config.mqtt_protocol != 5:  # shared subscriptions, subscription ids
        print("busfleet central serve: --group needs MQTT 5 (mqtt_protocol = 5)", file=sys.stderr)
        return 2
    setup_logging("central", args.log_level)
    if args.client_id:
        config = dataclasses.replace(config, client_id=args.client_id)
    if args.http_port is not None:
        config = dataclasses.replace(config, http_port=args.http_port)
    from central.service.serve import serve  # the service with its HTTP server
    from central.store.backend import NotPorted, is_store_failure

    try:
        _extend_start_for_upgrade(config.db)
        service = CentralService(config, group=args.group)
    except (NotPorted, sqlite3.Error) as exc:
        print(f"busfleet central serve: {_where(config.db)}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not is_store_failure(exc):  # psycopg's: a server that cannot be reached, say
            raise
        print(f"busfleet central serve: {_where(config.db)}: {exc}", file=sys.stderr)
        return 2
    run_service(serve(config, service))
    return 0


def _where(db: str) -> str:
    """The database setting as it may be shown: a URL without its user and password."""
    return db.rsplit("@", 1)[-1]


UPGRADE_S_PER_GB = 60.0  # measured ~5 s per GB (migration 8's indexes); a slow disk has room


def _extend_start_for_upgrade(db: str) -> None:
    """A schema upgrade of a big database outlasts the unit's TimeoutStartSec (60 s), and
    systemd would kill it and start it again, forever: ask for time by the file's size."""
    import logging
    from pathlib import Path

    from busfleet.watchdog import Notifier
    from central.store.backend import is_postgres_url
    from central.store.pg_store import pending_migrations

    if is_postgres_url(db):  # no file to size: the server runs the migrations (deploy/)
        return
    pending = pending_migrations(db)
    path = Path(db)
    if not pending or not path.is_file():  # a new database is created in no time
        return
    gb = path.stat().st_size / 1e9
    seconds = 60.0 + gb * UPGRADE_S_PER_GB
    status = f"upgrading the database schema (migrations to run: {pending})"
    logging.getLogger("busfleet.central").info("%s, %.1f GB: allowing %.0f s", status, gb, seconds)
    Notifier().extend_start(seconds, status)


def dash_cmd(args: argparse.Namespace) -> int:
    import dataclasses

    from central.client import account
    from central.dashboard.app import create_app
    from protocols.errors import TopicError
    from protocols.topics import check_user

    config = config_from(args)
    if args.name:
        config = dataclasses.replace(config, mqtt_username=args.name)
    elif args.mqtt_username is None and not args.config:
        config = dataclasses.replace(config, mqtt_username="dispatcher")
    try:
        user = check_user(account(config))  # it names the request topics
    except TopicError as exc:
        print(f"busfleet central dash: {exc} (the broker account)", file=sys.stderr)
        return 2
    if args.web:
        return _serve_web(args)
    create_app(config, user=user).run()
    return 0


def _serve_web(args: argparse.Namespace) -> int:
    """`dash --web`: each browser session runs this same command without --web."""
    import os

    from central.dashboard.web import DashboardServer, WebError

    argv = [sys.executable, "-m", "busfleet.cli", "central", "dash"]
    given = {
        "--config": os.path.abspath(args.config) if args.config else None,
        "--db": args.db,
        "--mqtt-host": args.mqtt_host,
        "--mqtt-port": args.mqtt_port,
        "--mqtt-username": args.mqtt_username,
        "--mqtt-protocol": args.mqtt_protocol,
        "--name": args.name,
    }
    for option, value in given.items():
        if value is not None:
            argv += [option, str(value)]
    try:
        server = DashboardServer(
            argv, host=args.host, port=args.port, public_url=args.public_url, sessions=args.sessions
        )
    except WebError as exc:
        print(f"busfleet central dash: {exc}", file=sys.stderr)
        return 2
    try:
        server.serve()
    except OSError as exc:  # the port taken, the address not this machine's
        print(
            f"busfleet central dash: cannot serve on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def assign_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import Assign

    prog = "busfleet central assign"
    if not (args.trip or args.block or args.route):
        print(f"{prog}: give --trip, --block or --route", file=sys.stderr)
        return 2
    request = Assign(bus=args.bus, trip=args.trip, block=args.block, route=args.route)
    reply = ask_central(args, request, prog)
    if isinstance(reply, int):
        return reply
    print(f"{reply.result['bus']}: desired state version {reply.result['version']} published")
    return 0


def _scalar(text: str) -> str | int | float:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def command_cmd(args: argparse.Namespace) -> int:
    from protocols.errors import CodecError
    from protocols.requests import SendCommand, bus_command

    prog = "busfleet central command"
    pairs = [a.partition("=") for a in args.arg]
    if any(not sep for _, sep, _ in pairs):
        print(f"{prog}: --arg takes KEY=VALUE", file=sys.stderr)
        return 2
    cmd_args: dict[str, str | int | float | bool | None] = {k: _scalar(v) for k, _, v in pairs}
    try:
        command = bus_command(args.name, cmd_args)
    except CodecError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    reply = ask_central(args, SendCommand(bus=args.bus, command=command, ttl_s=args.ttl), prog)
    if isinstance(reply, int):
        return reply
    print(f"{args.bus}: command {args.name} sent, id {reply.result['id']}")
    return 0


def commands_cmd(args: argparse.Namespace) -> int:
    """Asks the running central for the commands (it alone opens the database)."""

    from busfleet.commands._common import print_records
    from protocols.requests import ListCommands

    return print_records(args, ListCommands(bus=args.bus), "busfleet central commands")
