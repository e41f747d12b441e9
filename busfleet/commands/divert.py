"""`busfleet central divert create|list|cancel`: diversions of a route, pushed to its buses.

Registered under `central` (by busfleet/commands/central.py), with the same --config/--db and
broker options as the other central tools. Each asks the running central (central/client.py):
`create` and `cancel` have it store the diversion and publish the buses' desired states,
`list` has it read them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "busfleet central divert"


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `divert` with its subcommands to `busfleet central`."""
    p = csub.add_parser(
        "divert",
        help="divert a route: skipped stops, temporary stops, a detour path",
        description="Diversions of a route (or some of its trips) for a while. Each bus "
        "assigned to the route gets it in its desired state; the bus follows the detour "
        "from --from to --until by its own clock (no false off-route alarm), its displays "
        "and the Wi-Fi portal show the notice and the skipped stops, and central's "
        "GTFS-Realtime marks the stops SKIPPED and publishes a Service Alert. After "
        "--until everything returns to the timetable by itself.",
    )
    dsub = p.add_subparsers(dest="divert_command", metavar="COMMAND", required=True)

    create = dsub.add_parser(
        "create",
        help="define a diversion and push it to the route's buses",
        description="Store a diversion and put it into the desired state of every bus on the "
        "route. Give skipped stops, temporary stops or a detour path (or several). Times: "
        "ISO 8601 (local time unless an offset is given) or +30m, +2h, +1d from now. Prints "
        "one JSON line: the diversion's id and the buses updated.",
    )
    connection_args(create)
    create.add_argument("route", metavar="ROUTE", help="the GTFS route_id")
    create.add_argument(
        "--trip",
        action="append",
        default=[],
        metavar="T",
        help="only this trip of the route (may repeat; default: every trip)",
    )
    create.add_argument(
        "--skip", nargs="+", action="extend", default=[], metavar="STOP", help="stop_ids not served"
    )
    create.add_argument(
        "--temp-stop",
        action="append",
        default=[],
        metavar="NAME,LAT,LON",
        help='a temporary stop on the detour, e.g. "Lake St,-16.92,145.77" (may repeat)',
    )
    create.add_argument(
        "--path",
        metavar="LAT,LON;LAT,LON;...",
        help="the detour in driving order: it replaces the route's shape between the points "
        "nearest its first and its last coordinate (trips the other way drive it reversed); "
        "write --path=-16.9,145.7;... when it starts with a minus sign",
    )
    create.add_argument("--from", dest="valid_from", metavar="WHEN", help="from (default now)")
    create.add_argument("--until", default="+24h", metavar="WHEN", help="until (default +24h)")
    create.add_argument("--notice-de", default="", metavar="TEXT", help="notice for passengers")
    create.add_argument("--notice-en", default="", metavar="TEXT", help="the notice in English")
    create.set_defaults(func=create_cmd)

    lst = dsub.add_parser(
        "list",
        help="list diversions",
        description="One JSON line per diversion, newest first, with its status (active, "
        "expired, cancelled).",
    )
    connection_args(lst)
    lst.add_argument("--status", choices=("active", "expired", "cancelled"), help="only these")
    lst.set_defaults(func=list_cmd)

    cancel = dsub.add_parser(
        "cancel",
        help="end a diversion now",
        description="End a diversion before its time: it leaves every bus's desired state and "
        "the buses return to the timetable.",
    )
    connection_args(cancel)
    cancel.add_argument("diversion_id", metavar="ID", help="the diversion id (see `divert list`)")
    cancel.set_defaults(func=cancel_cmd)


def create_cmd(args: argparse.Namespace) -> int:
    import time

    from busfleet.commands._common import ask_central
    from central.diversions import parse_path, parse_temp_stop
    from central.when import parse_when
    from protocols.requests import CreateDiversion, TempStopSpec

    prog = f"{PROG} create"
    now = time.time()
    try:
        valid_from = parse_when(args.valid_from, now) if args.valid_from else None
        valid_to = parse_when(args.until, now) if args.until else None
        temps = [parse_temp_stop(t) for t in args.temp_stop]
        path = parse_path(args.path) if args.path else []
    except ValueError as exc:  # DiversionError is one
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    request = CreateDiversion(
        route=args.route,
        trips=args.trip,
        skip=args.skip,
        temp_stops=[TempStopSpec(name=n, lat=la, lon=lo) for n, la, lo in temps],
        path=path,
        valid_from=valid_from,
        valid_to=valid_to,
        notice_de=args.notice_de,
        notice_en=args.notice_en,
    )
    reply = ask_central(args, request, prog)
    if isinstance(reply, int):
        return reply
    buses = {str(row["bus"]): row["version"] for row in reply.tables.get("buses", [])}
    if not buses:
        print(f"{prog}: no bus on route {args.route} yet; buses get it when assigned to it")
    summary: dict[str, Any] = {"id": reply.result["id"], "buses": buses, "published": True}
    print(json.dumps(summary))
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    """Asks the running central for the diversions."""
    from busfleet.commands._common import print_records
    from protocols.requests import ListDiversions

    return print_records(args, ListDiversions(status=args.status), f"{PROG} list")


def cancel_cmd(args: argparse.Namespace) -> int:
    from busfleet.commands._common import ask_central
    from protocols.requests import CancelDiversion

    prog = f"{PROG} cancel"
    reply = ask_central(args, CancelDiversion(id=args.diversion_id), prog)
    if isinstance(reply, int):
        return reply
    print(f"{args.diversion_id}: cancelled, {reply.result['buses']} buses updated")
    return 0
