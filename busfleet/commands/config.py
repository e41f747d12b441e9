"""`busfleet central config set|show`: agent settings from central, per bus or group (issue 14).

Registered under `central` (by busfleet/commands/central.py), with the same --config/--db and
broker options as the other central tools; each asks the running central. `set` puts settings
into the desired documents of the buses named, of a group's or of all (central/remote_config.py);
each bus judges the values by its own config schema, applies them (live, or by a restart when
no trip runs) and reports what it runs and what it refused, which `show` sets beside what
central wants.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable
from typing import TYPE_CHECKING

from busfleet.commands._common import ask_central

if TYPE_CHECKING:
    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "busfleet central config"


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `config` with its subcommands to `busfleet central`."""
    p = csub.add_parser(
        "config",
        help="agent settings pushed to buses (set, show)",
        description="Agent settings by their agent.toml names (telemetry.send_every_s, "
        "portal.max_clients, ...), carried in each bus's desired state. The bus checks them "
        "against its config schema, applies them live where it can and otherwise restarts "
        "when no trip runs, keeps them through restarts, and reports what it runs and what it "
        "refused. Never remotely: the bus's id and data_dir, the broker, credentials, paths.",
    )
    sub = p.add_subparsers(dest="config_command", metavar="COMMAND", required=True)

    set_ = sub.add_parser(
        "set",
        help="set (or unset) settings of one or more buses",
        description="Set settings in the desired state of each bus named, of each bus of a "
        "group (--group, central's groups: `busfleet central group set`), or of every bus "
        'central knows (--all). Values are TOML values: 5, 2.5, true, "text" (a bare word is '
        "a text too). Example: `config set bus-01 telemetry.send_every_s=5 "
        "portal.max_clients=40`, `config set --group depot display.language=de,en`. "
        "--unset drops a setting: agent.toml's value applies again.",
    )
    connection_args(set_)
    set_.add_argument(
        "items",
        nargs="*",
        metavar="BUS|KEY=VALUE",
        help="bus ids (or bus:B, group:G), then settings (a word with = is a setting)",
    )
    set_.add_argument(
        "--group", action="append", default=[], metavar="G", help="the buses of group G (repeat)"
    )
    set_.add_argument("--all", action="store_true", help="every bus central knows")
    set_.add_argument(
        "--unset", action="append", default=[], metavar="KEY", help="drop this setting (repeat)"
    )
    set_.set_defaults(func=set_cmd)

    show = sub.add_parser(
        "show",
        help="a bus's settings: desired, running, refused",
        description="One line per setting central set or the bus reports: the desired value, "
        "the value the bus runs, and its state: running, pending (not applied yet, or waiting "
        "for the restart after the current trip) or refused (with the bus's reason).",
    )
    connection_args(show)
    show.add_argument("bus", help="bus id")
    show.set_defaults(func=show_cmd)


def parse_value(text: str) -> str | int | float | bool:
    """A value as agent.toml would read it: 5, 2.5, true, "quoted text"; anything else (a bare
    word) is a text. ValueError for a TOML array or table: settings are scalars."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"{text!r}: a setting is a text, a number or true/false")
    return value


def set_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import SetConfig

    prog = f"{PROG} set"
    buses = [item for item in args.items if "=" not in item]
    buses += [f"group:{g}" for g in args.group] + (["all"] if args.all else [])
    values: dict[str, str | int | float | bool] = {}
    try:
        for item in args.items:
            key, sep, text = item.partition("=")
            if sep:
                values[key.strip()] = parse_value(text.strip())
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if not buses:
        print(f"{prog}: name at least one bus, --group G or --all", file=sys.stderr)
        return 2
    if not values and not args.unset:
        print(f"{prog}: give KEY=VALUE or --unset KEY", file=sys.stderr)
        return 2
    request = SetConfig(buses=buses, values=values, unset=args.unset)
    reply = ask_central(args, request, prog)
    if isinstance(reply, int):
        return reply
    for row in reply.tables.get("buses", []):
        print(f"{row['bus']}: desired state version {row['version']} published")
    return 0


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def show_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import ShowConfig

    reply = ask_central(args, ShowConfig(bus=args.bus), f"{PROG} show")
    if isinstance(reply, int):
        return reply
    r = reply.result
    reported = "none yet" if r.get("reported_version") is None else r["reported_version"]
    print(
        f"{r['bus']}: desired version {r['desired_version']}, reported version {reported},"
        f" {r.get('pending_restart', 0)} setting(s) waiting for a restart"
    )
    rows = reply.tables.get("config", [])
    if not rows:
        print("no settings from central")
        return 0
    table = [("KEY", "DESIRED", "RUNNING", "STATE")]
    table += [
        (str(x["key"]), _text(x["desired"]), _text(x["running"]), str(x["state"])) for x in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for line, row in zip(table, [None, *rows], strict=True):
        text = "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        if row is not None and row["reason"]:
            text += f"  ({row['reason']})"
        print(text)
    return 0
