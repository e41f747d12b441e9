"""`busfleet central timetable publish|list|show` and `busfleet central group set|list|show|delete`.

Registered under `central` (by busfleet/commands/central.py), with the same --config/--db and
broker options as the other central tools. Every command asks the running central
(central/client.py): it alone stores and publishes. Listings print one JSON line per record.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from busfleet.commands._common import ask_central, print_records
from central.when import parse_when

if TYPE_CHECKING:
    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

TARGETS = "all, a bus id (or bus:B), group:G"


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `timetable` and `group` to `busfleet central`."""
    tt = csub.add_parser(
        "timetable",
        help="timetable versions: publish one to buses, list them, show what changed",
        description="Every `central import-gtfs` stores the feed as a new timetable version. "
        "Publishing a version puts it (package hash, size, URL, valid-from) into the desired "
        "state of the targeted buses, which download it from central's HTTP and switch at "
        "valid-from.",
    )
    tsub = tt.add_subparsers(dest="timetable_command", required=True, metavar="COMMAND")
    pub = tsub.add_parser(
        "publish",
        help="publish a timetable version to buses",
        description="Put timetable VERSION into the desired state of every targeted bus "
        f"(--to, may repeat: {TARGETS}; default all). A bus central first hears of later "
        "gets the newest publication that targets it. Buses switch at --valid-from by their "
        "own clock (ISO 8601, local time unless an offset is given, or +30m, +2h, +1d from "
        "now; default: at once). The last line printed is one JSON object.",
    )
    connection_args(pub)
    pub.add_argument("version", type=int, metavar="VERSION", help="a version number (see list)")
    pub.add_argument("--valid-from", metavar="WHEN", help="when buses switch (default: at once)")
    pub.add_argument(
        "--to", action="append", default=[], metavar="TARGET", help=f"{TARGETS} (default all)"
    )
    pub.set_defaults(func=publish_cmd)

    lst = tsub.add_parser(
        "list",
        help="list timetable versions",
        description="One JSON line per version, oldest first: imported when and from where, "
        "package sha256 and size, the import's counts, and how many buses were given it.",
    )
    connection_args(lst)
    lst.set_defaults(func=list_cmd)

    show = tsub.add_parser(
        "show",
        help="show a timetable version and what changed against the previous one",
        description="One JSON object: the version and, for routes, stops and trips, how many "
        "were added, removed and changed against the version before it, with their ids (up to "
        "--list N of each).",
    )
    connection_args(show)
    show.add_argument("version", type=int, metavar="VERSION", help="a version number")
    show.add_argument("--list", type=int, default=20, metavar="N", help="ids listed per change")
    show.set_defaults(func=show_cmd)

    grp = csub.add_parser(
        "group",
        help="named groups of buses (a depot, a vehicle type, a route family)",
        description="Name a group of buses once; timetables (--to group:G), playlists (assign "
        "group:G) and passenger messages (targets group:G) can target it.",
    )
    gsub = grp.add_subparsers(dest="group_command", required=True, metavar="COMMAND")
    gset = gsub.add_parser(
        "set",
        help="create a group or replace its buses",
        description="The group NAME is these buses from now on.",
    )
    connection_args(gset)
    gset.add_argument("name", metavar="NAME", help="letters, digits, _ . - (up to 64)")
    gset.add_argument("buses", nargs="+", metavar="BUS", help="bus ids")
    gset.set_defaults(func=group_set_cmd)
    glist = gsub.add_parser(
        "list", help="list groups", description="One JSON line per group with its buses."
    )
    connection_args(glist)
    glist.set_defaults(func=group_list_cmd)
    gshow = gsub.add_parser(
        "show", help="show one group", description="The group's buses, as one JSON line."
    )
    connection_args(gshow)
    gshow.add_argument("name", metavar="NAME")
    gshow.set_defaults(func=group_show_cmd)
    gdel = gsub.add_parser(
        "delete",
        help="delete a group",
        description="Delete the group (what was sent to its buses stays with them).",
    )
    connection_args(gdel)
    gdel.add_argument("name", metavar="NAME")
    gdel.set_defaults(func=group_delete_cmd)


def publish_cmd(args: argparse.Namespace) -> int:
    import time

    from protocols.requests import PublishTimetable

    prog = "busfleet central timetable publish"
    try:
        valid_from = parse_when(args.valid_from, time.time()) if args.valid_from else None
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.version < 1:
        print(f"{prog}: a version is 1 or more", file=sys.stderr)
        return 2
    request = PublishTimetable(version=args.version, valid_from=valid_from, to=args.to or ["all"])
    reply = ask_central(args, request, prog)
    if isinstance(reply, int):
        return reply
    buses = {str(row["bus"]): row["version"] for row in reply.tables.get("buses", [])}
    for bus, version in buses.items():
        print(f"{bus}: desired state version {version}")
    if not buses:
        print(f"{prog}: no bus known yet; buses get it when central first hears of them",
              file=sys.stderr)  # fmt: skip
    print(json.dumps({"timetable": args.version, "valid_from": valid_from, "buses": buses}))
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import ListTimetables

    return print_records(args, ListTimetables(), "busfleet central timetable list")


def show_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import ShowTimetable

    prog = "busfleet central timetable show"
    if args.version < 1 or not 0 <= args.list <= 1000:
        print(f"{prog}: a version is 1 or more; --list 0 to 1000", file=sys.stderr)
        return 2
    return print_records(args, ShowTimetable(version=args.version, max_listed=args.list), prog)


def group_set_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import SetGroup

    reply = ask_central(
        args, SetGroup(name=args.name, buses=args.buses), "busfleet central group set"
    )
    if isinstance(reply, int):
        return reply
    print(f"group {reply.result['group']}: {reply.result['buses']} buses")
    return 0


def group_list_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import ListGroups

    return print_records(args, ListGroups(), "busfleet central group list")


def group_show_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import ShowGroup

    return print_records(args, ShowGroup(name=args.name), "busfleet central group show")


def group_delete_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import DeleteGroup

    reply = ask_central(args, DeleteGroup(name=args.name), "busfleet central group delete")
    if isinstance(reply, int):
        return reply
    print(f"group {args.name}: deleted")
    return 0
