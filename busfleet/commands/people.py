"""`busfleet central people ...` and `busfleet central audit` (issue 18): who has which role at
central, and what everyone asked.

Registered under `central` (by busfleet/commands/central.py) with the other tools' connection
options; each asks the running central, which alone writes its database. `people set NAME
ROLE` records a role (an admin's request; the first role recorded must be an admin's: until
then nobody is checked), `people remove NAME` takes it, `people list` lists them. `audit`
prints the audit log (every change asked and every refusal), oldest first: a line each, or
the records as JSON with --json. The rules are central/roles.py's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from busfleet.commands._common import ask_central, read_central, terminal_text
from busfleet.commands.driver import parse_since
from protocols.people_requests import ROLES

if TYPE_CHECKING:
    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

ROLE_HELP = (
    "viewer: reads only; ads: reads, media, playlists and assigning playlists; dispatcher: "
    "everything operational; admin: everything and recording roles"
)


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `people` and `audit` to `busfleet central`."""
    p = csub.add_parser(
        "people",
        help="who has which role at central (viewer, ads, dispatcher, admin)",
        description="Each broker account of the city listener (busfleet bus service-user) is "
        f"a person with a role at central. {ROLE_HELP}. An account without a role may ask "
        "nothing, once any role is recorded; the first must be an admin's.",
    )
    psub = p.add_subparsers(dest="people_command", metavar="COMMAND", required=True)
    set_ = psub.add_parser("set", help="give an account its role (an admin's request)")
    connection_args(set_)
    set_.add_argument("name", metavar="NAME", help="the broker account")
    set_.add_argument("role", choices=ROLES, help=ROLE_HELP)
    set_.set_defaults(func=set_cmd)
    remove = psub.add_parser("remove", help="take an account's role: it may ask nothing")
    connection_args(remove)
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=remove_cmd)
    listed = psub.add_parser("list", help="the accounts with a role")
    connection_args(listed)
    listed.set_defaults(func=list_cmd)

    a = csub.add_parser(
        "audit",
        help="the audit log: who asked what, when, and the answer",
        description="Every request that changed something or was refused, oldest first: "
        "when, the account and its role, the request, ok or NOT DONE and the answer (the "
        "result, or why not).",
    )
    connection_args(a)
    a.add_argument("--user", help="only this account")
    a.add_argument(
        "--since",
        default="24h",
        metavar="WHEN",
        help="how far back: 30m, 2h, 7d (default 24h) or an ISO 8601 time",
    )
    a.add_argument("--json", action="store_true", help="the records, one JSON object a line")
    a.set_defaults(func=audit_cmd)


def _set(args: argparse.Namespace, role: str, prog: str) -> int:
    from protocols.people_requests import SetRole

    reply = ask_central(args, SetRole(name=args.name, role=role), prog)  # type: ignore[arg-type]
    if isinstance(reply, int):
        return reply
    print(terminal_text(reply.result.get("said", "")))
    return 0


def set_cmd(args: argparse.Namespace) -> int:
    return _set(args, args.role, "busfleet central people set")


def remove_cmd(args: argparse.Namespace) -> int:
    return _set(args, "none", "busfleet central people remove")


def list_cmd(args: argparse.Namespace) -> int:
    from protocols.people_requests import ListPeople

    records = read_central(args, ListPeople(), "busfleet central people list")
    if isinstance(records, int):
        return records
    if not records:
        print("no roles recorded: nobody's requests are checked yet")
    for r in records:
        since = f"since {_time(r.get('created'))} by {_clean(r.get('by'))}"
        print(f"{_clean(r.get('name')):<24} {_clean(r.get('role')):<10} {since}")
    return 0


def audit_line(r: dict[str, Any]) -> str:
    """One audit record as a line: time, account (role), request, the answer."""
    ok = "ok" if r.get("ok") else "NOT DONE"
    role = _clean(r.get("role")) or "-"
    return (
        f"{_time(r.get('t'))}  {_clean(r.get('account'))} ({role})  {_clean(r.get('summary'))}"
        f"  {ok}: {_clean(r.get('answer'))}"
    )


def audit_cmd(args: argparse.Namespace) -> int:
    from protocols.people_requests import AuditLog

    prog = "busfleet central audit"
    try:
        since = parse_since(args.since, time.time())
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    records = read_central(args, AuditLog(user=args.user, since=max(0.0, since)), prog)
    if isinstance(records, int):
        return records
    for r in records:
        print(json.dumps(r, ensure_ascii=False) if args.json else audit_line(r))
    return 0


def _time(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return dt.datetime.fromtimestamp(value).astimezone().isoformat(timespec="seconds")


def _clean(value: object) -> str:
    return "" if value is None else terminal_text(value)
