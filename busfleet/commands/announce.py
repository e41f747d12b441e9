"""`busfleet central announce` and `busfleet central announcement`: live announcements from
city hall (issue 17).

Registered under `central` (by busfleet/commands/central.py). Both ask the running central
(central/client.py); central/announcements.py has the rules.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from busfleet.commands._common import ask_central, read_central, terminal_text

if TYPE_CHECKING:
    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

TARGETS = "all, a bus id (or bus:B), group:G, route:R"
POLL_S = 0.5


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `announce` and `announcement` to `busfleet central`."""
    ann = csub.add_parser(
        "announce",
        help="a live announcement: the targeted buses speak it and show it now",
        description="Send a live announcement to the buses --to names (may repeat or take "
        f"several: {TARGETS}; route:R is every bus whose current assignment is on route R, "
        "as for passenger messages). Each bus speaks it (German, then English) and shows it "
        "on its displays at the same moment, and adds it to its Wi-Fi page. A bus that does "
        "not get it within --ttl seconds (offline longer) never does: it is reported expired. "
        "With --wait, waits up to that many seconds for every bus's answer and prints each. "
        "The last line printed is one JSON object.",
    )
    connection_args(ann)
    ann.add_argument(
        "--to", nargs="+", action="extend", required=True, metavar="TARGET", help=TARGETS
    )
    ann.add_argument("--de", required=True, metavar="TEXT", help="the German text (spoken first)")
    ann.add_argument("--en", default="", metavar="TEXT", help="the English text (optional)")
    ann.add_argument(
        "--ttl", type=float, default=120.0, metavar="S",
        help="seconds a bus may be away and still get it (default 120, at most 3600)",
    )  # fmt: skip
    ann.add_argument(
        "--wait", type=float, default=0.0, metavar="S", help="wait for the buses' answers"
    )
    ann.set_defaults(func=announce_cmd)

    status = csub.add_parser(
        "announcement",
        help="where a live announcement stands on each bus",
        description="Per bus announcement ID went to: its status (sent, delivered: spoken "
        "and shown, failed, expired: away longer than its ttl), one JSON object a line.",
    )
    connection_args(status)
    status.add_argument("id", metavar="ID", help="the id `central announce` printed")
    status.set_defaults(func=status_cmd)


def announce_cmd(args: argparse.Namespace) -> int:
    from protocols.announce_requests import LiveAnnounce

    prog = "busfleet central announce"
    request = LiveAnnounce(to=args.to, de=args.de, en=args.en, ttl_s=args.ttl)
    reply = ask_central(args, request, prog)
    if isinstance(reply, int):
        return reply
    r = reply.result
    buses = [str(row["bus"]) for row in reply.tables.get("buses", [])]
    print(f"announcement {r['announcement']} sent to {r['buses']} buses: {', '.join(buses)}")
    summary: dict[str, Any] = {**r, "to": buses}
    if args.wait > 0:
        rows = _wait(args, str(r["announcement"]), args.wait, prog)
        if isinstance(rows, int):
            return rows
        for row in rows:
            why = f" ({terminal_text(row['reason'])})" if row["reason"] else ""  # the bus's
            print(f"  {row['bus']}: {row['status']}{why}")
        summary["status"] = {str(row["bus"]): row["status"] for row in rows}
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _wait(
    args: argparse.Namespace, announcement: str, wait_s: float, prog: str
) -> list[dict[str, Any]] | int:
    """The announcement's rows once none is `sent` any more, or when `wait_s` is up."""
    from protocols.announce_requests import AnnouncementStatus

    deadline = time.monotonic() + wait_s
    while True:
        rows = read_central(args, AnnouncementStatus(id=announcement), prog)
        if isinstance(rows, int):
            return rows
        if all(row["status"] != "sent" for row in rows) or time.monotonic() >= deadline:
            return rows
        time.sleep(POLL_S)


def status_cmd(args: argparse.Namespace) -> int:
    from protocols.announce_requests import AnnouncementStatus

    rows = read_central(args, AnnouncementStatus(id=args.id), "busfleet central announcement")
    if isinstance(rows, int):
        return rows
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    sys.stdout.flush()
    return 0
