"""`busfleet central logs BUS [--since 2h] [--grep TEXT] [--timeout S]`: a bus's own log.

Registered under `central` (by busfleet/commands/central.py). It sends the bus a `logs`
command through the running central (id, expiry: as `central command`), waits for the
answer by asking central (`CommandAnswer`) and prints the lines on stdout; a note on stderr
when older lines were left out. A bus that does not answer in time: said, exit status 1; the
command stays queued until its expiry, and `--answer ID` fetches its answer later.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from busfleet.commands._common import config_from, dispatcher_name
from protocols.bus_commands import MAX_LOGS_BYTES, MAX_LOGS_GREP, MAX_LOGS_SINCE_S

if TYPE_CHECKING:
    from central.client import Requests
    from protocols.requests import DispatchReply

    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "busfleet central logs"
POLL_S = 0.5
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
# A bus's text on a terminal: its control characters shown, never obeyed (escape sequences).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """`text` with its control characters (but newline and tab) written as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def duration(text: str) -> float:
    """Seconds of "90", "30s", "30m", "2h", "1d": more than 0, at most 7 days."""
    found = _DURATION.match(text)
    if found is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is no duration: a number with s, m, h or d (30m, 2h, 1d)"
        )
    seconds = float(found.group(1)) * UNITS[found.group(2) or "s"]
    if not 0 < seconds <= MAX_LOGS_SINCE_S:
        raise argparse.ArgumentTypeError(f"{text!r}: more than 0 s and at most 7 days (7d)")
    return seconds


def grep_text(text: str) -> str:
    if len(text) > MAX_LOGS_GREP:
        raise argparse.ArgumentTypeError(f"at most {MAX_LOGS_GREP} characters ({len(text)} given)")
    return text


def timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is no number of seconds") from None
    if not 0 < seconds <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: more than 0 and at most 86400 seconds")
    return seconds


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `logs` to `busfleet central`."""
    p = csub.add_parser(
        "logs",
        help="read a bus's own log (its recent lines)",
        description="Ask a bus for the lines of its agent log of the last --since (default "
        "1h, at most 7d) that contain --grep (plain text, not a pattern), and print them, "
        "oldest first. The bus sends the newest lines that fit 64 KiB compressed; when older "
        "ones were left out, stderr says so. Secrets (its MQTT password, password=/token= "
        "values, private keys) are taken out on the bus. A bus that does not answer within "
        "--timeout: exit status 1; the command stays queued until --ttl, and `--answer ID` "
        "prints its answer later.",
    )
    connection_args(p)
    p.add_argument("bus", help="bus id")
    p.add_argument(
        "--since",
        type=duration,
        default=3600.0,
        metavar="DURATION",
        help="how far back: 90s, 30m, 2h, 1d (default 1h, at most 7d)",
    )
    p.add_argument(
        "--grep",
        type=grep_text,
        default="",
        metavar="TEXT",
        help="only lines containing TEXT (case-sensitive, plain text)",
    )
    p.add_argument(
        "--timeout",
        type=timeout,
        default=30.0,
        metavar="S",
        help="seconds to wait for the bus's answer (default 30)",
    )
    p.add_argument(
        "--ttl",
        type=timeout,
        default=300.0,
        metavar="S",
        help="seconds the command waits for the bus before it expires (default 300)",
    )
    p.add_argument(
        "--answer", metavar="ID", help="send nothing: print the answer to logs command ID"
    )
    p.set_defaults(func=logs_cmd)


def logs_cmd(args: argparse.Namespace) -> int:
    from central.errors import NoAnswer, NoCentral, Unavailable

    try:
        return asyncio.run(_logs(args))
    except NoAnswer as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    except NoCentral as exc:
        print(f"{PROG}: {exc}; start it with `busfleet central serve`", file=sys.stderr)
    except Unavailable as exc:
        print(f"{PROG}: {exc}; no central can be asked", file=sys.stderr)
    return 2


async def _logs(args: argparse.Namespace) -> int:
    from central import client
    from protocols.requests import Logs, SendCommand

    async with client.connect(config_from(args), dispatcher_name(None)) as requests:
        cmd_id = args.answer
        if cmd_id is None:
            command = Logs(since_s=args.since, grep=args.grep, max_bytes=MAX_LOGS_BYTES)
            request = SendCommand(bus=args.bus, command=command, ttl_s=args.ttl)
            reply = await requests.ask(client.envelope(request), 30.0)
            if not reply.ok:
                print(f"{PROG}: {reply.error}", file=sys.stderr)
                return 1 if reply.failed else 2
            cmd_id = str(reply.result["id"])
        answer = await _wait(requests, args.bus, cmd_id, args.timeout)
    return _print(answer, args.bus, cmd_id, args.timeout)


async def _wait(requests: Requests, bus: str, cmd_id: str, timeout_s: float) -> DispatchReply:
    """Central's answer about the command: the bus's, or still "sent" after `timeout_s`."""
    from central import client
    from protocols.requests import CommandAnswer

    deadline = time.monotonic() + timeout_s
    while True:
        reply = await requests.ask(client.envelope(CommandAnswer(bus=bus, id=cmd_id)), 30.0)
        if not reply.ok or reply.result.get("status") != "sent":
            return reply
        if time.monotonic() >= deadline:
            return reply
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def _print(reply: DispatchReply, bus: str, cmd_id: str, timeout_s: float) -> int:
    from protocols.errors import CodecError
    from protocols.logtext import unpack

    if not reply.ok:
        print(f"{PROG}: {reply.error}", file=sys.stderr)
        return 1 if reply.failed else 2
    r = reply.result
    status = r.get("status")
    if status == "sent":
        expires = r.get("expires")
        until = "?"
        if isinstance(expires, float | int):
            until = time.strftime("%H:%M:%S", time.localtime(expires))
        print(
            f"{PROG}: {bus} did not answer within {timeout_s:g} s (offline?); the command "
            f"{cmd_id} waits for it until {until}: `{PROG} {bus} --answer {cmd_id}` shows the "
            "answer later",
            file=sys.stderr,
        )
        return 1
    if status != "ok":
        print(f"{PROG}: {bus}: {status}: {r.get('reason') or 'no reason given'}", file=sys.stderr)
        return 1
    packed = r.get("log")
    if r.get("name") != "logs" or not isinstance(packed, str):
        print(f"{PROG}: command {cmd_id} is no logs command ({r.get('name')})", file=sys.stderr)
        return 2
    try:
        text = unpack(packed)
    except CodecError as exc:
        print(f"{PROG}: {bus} sent a log that cannot be read: {exc}", file=sys.stderr)
        return 1
    if text:
        sys.stdout.write(shown(text) + "\n")
    if r.get("truncated"):
        print(
            f"{PROG}: {r.get('lines')} lines shown; older ones were left out (the answer is "
            "capped): narrow --since or --grep",
            file=sys.stderr,
        )
    elif not text:
        print(f"{PROG}: {bus} has no log lines that match", file=sys.stderr)
    return 0
