"""`busfleet central message-driver|driver-log`: messages to drivers and what they send back.

Registered under `central` (by busfleet/commands/central.py), with the same --config/--db
and broker options as the other central tools. Both ask the running central
(central/client.py): it sends the message, and it reads the log from its database.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

from central.when import UNITS


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `message-driver` and `driver-log` to `busfleet central`."""
    msg = csub.add_parser(
        "message-driver",
        help="send a message to a bus driver's terminal",
        description="Send a text to the driver's terminal of a bus. It is a command with an "
        "id and an expiry: the bus answers when the message is on the terminal (delivered), "
        "and the driver's acknowledgement comes back with its time (see `central driver-log`). "
        "A bus offline for longer than --ttl never shows it (expired). Prints the message id.",
    )
    connection_args(msg)
    msg.add_argument("bus", help="bus id")
    msg.add_argument("text", help="the message (at most 500 characters)")
    msg.add_argument(
        "--ttl",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="seconds the message may take to reach the bus (default 1800)",
    )
    msg.set_defaults(func=message_driver_cmd)

    log = csub.add_parser(
        "driver-log",
        help="messages to and from drivers, and emergency alarms",
        description="One JSON line per entry, oldest first: messages to drivers (`to_driver`, "
        "with status sent/delivered/failed/expired, when delivered and when acknowledged), "
        "the drivers' acknowledgements (`driver_ack`), canned messages from drivers "
        "(`from_driver`, with code, text and the bus's position) and emergency alarms "
        "(`emergency`, severity 4, with position). Times are unix seconds.",
    )
    connection_args(log)
    log.add_argument("--bus", help="only this bus")
    log.add_argument(
        "--since",
        default="24h",
        metavar="WHEN",
        help="how far back: 30m, 24h, 7d (default 24h) or an ISO 8601 time",
    )
    log.set_defaults(func=driver_log_cmd)


def parse_since(text: str, now: float) -> float:
    """'30m' / '24h' / '7d' / '90s' ago, or ISO 8601 (naive: local time)."""
    import datetime as dt

    if text[-1:] in UNITS:
        try:
            return now - float(text.lstrip("-")[:-1]) * UNITS[text[-1]]
        except ValueError:
            pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (30m, 24h, 7d or ISO 8601)") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()


def message_driver_cmd(args: argparse.Namespace) -> int:
    from busfleet.commands._common import ask_central
    from central.driver import MAX_TEXT
    from protocols.requests import DriverMessage, SendCommand

    prog = "busfleet central message-driver"
    text = args.text.strip()
    if not text:
        print(f"{prog}: the message is empty", file=sys.stderr)
        return 2
    if len(text) > MAX_TEXT:
        print(
            f"{prog}: the message has {len(text)} characters; at most {MAX_TEXT}", file=sys.stderr
        )
        return 2
    if args.ttl <= 0:
        print(f"{prog}: the time to live must be positive", file=sys.stderr)
        return 2
    request = SendCommand(bus=args.bus, command=DriverMessage(text=text), ttl_s=args.ttl)
    reply = ask_central(args, request, prog)
    if isinstance(reply, int):
        return reply
    print(f"{args.bus}: message sent to the driver, id {reply.result['id']}")
    return 0


def driver_log_cmd(args: argparse.Namespace) -> int:
    """Asks the running central for the driver log."""
    import time

    from busfleet.commands._common import read_central
    from protocols.requests import DriverLog

    prog = "busfleet central driver-log"
    try:
        since = parse_since(args.since, time.time())
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    records = read_central(args, DriverLog(bus=args.bus, since=max(0.0, since)), prog)
    if isinstance(records, int):
        return records
    for entry in records:
        print(json.dumps(entry, ensure_ascii=False))
    return 0
