"""Helpers the `busfleet central ...` commands share: connection options, the config they
make, and asking the running central. Every tool asks the service: one that changes
something (it alone writes desired state and publishes to buses), and one that lists or
reports (it alone opens the database). Only `import-gtfs` fills a database itself, and only
while no central runs."""

from __future__ import annotations

import argparse
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from central.config import CentralConfig
    from protocols.requests import DispatchReply, ReadRequest, Record, Request

T = TypeVar("T")


def connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="central TOML file (see deploy/central.example.toml)")
    p.add_argument(
        "--db",
        help="central's database, a SQLite file or a postgresql://user@host:port/dbname URL "
        "(overrides the config); used by `serve`, `retention` and by `import-gtfs` while no "
        "central runs, the other tools ask the running central, which has its own",
    )
    p.add_argument("--mqtt-host", help="broker host (overrides the config)")
    p.add_argument("--mqtt-port", type=int, help="broker port (overrides the config)")
    p.add_argument("--mqtt-username", help="MQTT user (overrides the config)")
    p.add_argument("--mqtt-protocol", type=int, choices=(4, 5), help="MQTT 5, or 4 for 3.1.1")


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


def dispatcher_name(name: str | None) -> str:
    """A dispatcher name usable as a topic level: the given one, else the login name."""
    import getpass
    import re

    raw = name or getpass.getuser() or "dispatcher"
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", raw).strip("-._")[:64]
    return clean or "dispatcher"


def _answered(prog: str, asking: Coroutine[Any, Any, T]) -> T | int:
    """What `asking` returns, or 2 after saying on stderr in one line why nobody answered."""
    import asyncio
    import sys

    from central.errors import NoAnswer, NoCentral, Unavailable

    try:
        return asyncio.run(asking)
    except NoAnswer as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
    except NoCentral as exc:
        print(f"{prog}: {exc}; start it with `busfleet central serve`", file=sys.stderr)
    except Unavailable as exc:
        print(f"{prog}: {exc}; no central can be asked", file=sys.stderr)
    return 2


def _refused(prog: str, reply: DispatchReply) -> int:
    """Say central's refusal or failure; 2 for a request to fix, 1 for central's trouble."""
    import sys

    print(f"{prog}: {reply.error}", file=sys.stderr)
    return 1 if reply.failed else 2


def ask_central(
    args: argparse.Namespace, request: Request, prog: str, *, timeout_s: float | None = None
) -> DispatchReply | int:
    """Ask the running central (central/client.py) and return its reply, or the exit status
    after saying on stderr why there is none: 2 when nobody answers or central refused
    (fix the request), 1 when central failed on its side."""
    from central import client

    asking = client.ask(
        config_from(args),
        request,
        user=dispatcher_name(None),
        timeout_s=timeout_s or client.REPLY_TIMEOUT_S,
    )
    reply = _answered(prog, asking)
    if isinstance(reply, int):
        return reply
    if not reply.ok:
        return _refused(prog, reply)
    return reply


def read_central(args: argparse.Namespace, request: ReadRequest, prog: str) -> list[Record] | int:
    """Every record central answers to a read-only request (all its pages, over one
    connection), or the exit status after saying why there are none, as `ask_central`."""
    answer = _answered(prog, _pages(config_from(args), request))
    if isinstance(answer, int):
        return answer
    if not isinstance(answer, list):
        return _refused(prog, answer)
    return answer


def print_records(args: argparse.Namespace, request: ReadRequest, prog: str) -> int:
    """`read_central`'s records on stdout, one JSON object a line; the exit status."""
    import json

    records = read_central(args, request, prog)
    if isinstance(records, int):
        return records
    for row in records:
        print(json.dumps(row, ensure_ascii=False))
    return 0


async def _pages(config: CentralConfig, request: ReadRequest) -> list[Record] | DispatchReply:
    """The records of every page; the reply itself if central refused or failed."""
    import sys

    import msgspec

    from central import client

    records: list[Record] = []
    async with client.connect(config, dispatcher_name(None)) as requests:
        while True:
            reply = await requests.ask(client.envelope(request))
            if not reply.ok:
                return reply
            records.extend(reply.records)
            if reply.result.get("truncated"):
                print("warning: a record too big for one reply was left out", file=sys.stderr)
            after = reply.result.get("next")
            if not isinstance(after, int) or after <= request.offset:
                return records
            request = msgspec.structs.replace(request, offset=after)


def terminal_text(value: object) -> str:
    """A value a bus (or anyone but the operator) wrote, for a terminal: control characters
    replaced, so an escape sequence in it is shown inert, never obeyed (clipboard writes,
    window titles, lines rewritten)."""
    return "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in str(value))
