"""Helpers the `busfleet central ...` commands share: connection options, the config they
make, and asking the running central (every tool that changes something asks the service,
which alone writes desired state and publishes to buses)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from central.config import CentralConfig
    from protocols.requests import DispatchReply, Request

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # '+30m' and friends


def connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="central TOML file (see deploy/central.example.toml)")
    p.add_argument("--db", help="SQLite file (overrides the config)")
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


def parse_when(text: str, now: float) -> float:
    """'+30m' / '+2h' / '+1d' / '+90s' from now, or ISO 8601 (naive: local time)."""
    import datetime as dt

    if text.startswith("+") and text[-1:] in UNITS:
        try:
            return now + float(text[1:-1]) * UNITS[text[-1]]
        except ValueError:
            pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (ISO 8601, or +30m, +2h, +1d)") from None
    if when.tzinfo is None:
        when = when.astimezone()  # the local time of city hall
    return when.timestamp()


def ask_central(
    args: argparse.Namespace, request: Request, prog: str, *, timeout_s: float | None = None
) -> DispatchReply | int:
    """Ask the running central (central/client.py) and return its reply, or the exit status
    after saying on stderr why there is none: 2 when nobody answers or central refused
    (fix the request), 1 when central failed on its side."""
    import asyncio
    import sys

    from central import client
    from central.errors import NoAnswer, NoCentral, Unavailable

    config = config_from(args)
    try:
        reply = asyncio.run(
            client.ask(
                config,
                request,
                user=dispatcher_name(None),
                timeout_s=timeout_s or client.REPLY_TIMEOUT_S,
            )
        )
    except NoAnswer as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except NoCentral as exc:
        print(f"{prog}: {exc}; start it with `busfleet central serve`", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"{prog}: {exc}; no central can be asked", file=sys.stderr)
        return 2
    if not reply.ok:
        print(f"{prog}: {reply.error}", file=sys.stderr)
        return 1 if reply.failed else 2
    return reply
