"""`busfleet central release rollout|cancel|status|list`: software rollouts (issue 16).

Registered under `central` (by busfleet/commands/central.py), with the same --config/--db and
broker options as the other central tools. Every command asks the running central
(central/client.py): it alone stores rollouts, writes desired state and publishes it; its
rollout task assigns the later waves (central/rollouts.py says how).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from busfleet.commands._common import ask_central, read_central, terminal_text

if TYPE_CHECKING:
    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

TARGETS = "all, a bus id (or bus:B), group:G"
STATES = ("updated", "assigned", "pending", "failed", "refused")


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `release` to `busfleet central`."""
    rel = csub.add_parser(
        "release",
        help="software rollouts: roll a release out to buses in waves, see who runs what",
        description="Roll a release version (signed into central's release repository) out "
        "to buses in waves: each wave starts when every bus of the one before runs the "
        "version, and the rollout halts (with an alarm) when failed buses reach --halt-on.",
    )
    rsub = rel.add_subparsers(dest="release_command", required=True, metavar="COMMAND")
    roll = rsub.add_parser(
        "rollout",
        help="roll a release version out to buses in waves",
        description="Put release VERSION into the desired state of the targeted buses, wave "
        f"after wave (--to, may repeat or take several: {TARGETS}; default all). --waves are "
        "cumulative counts or percentages of the buses, sorted by id (1,10%,100%: one bus, "
        "then up to a tenth, then all; each wave at least one bus). A wave is done when each "
        "of its buses runs VERSION (or failed): an offline bus keeps it waiting and updates "
        "when it returns. When failed or refused buses reach --halt-on, the rollout halts: no "
        "further wave, the rest keep their release, an alarm is raised. A new rollout replaces "
        "the open rollouts of the same buses. The last line printed is one JSON object.",
    )
    connection_args(roll)
    roll.add_argument("version", metavar="VERSION", help="a release version, like 0.2.0")
    roll.add_argument(
        "--to", nargs="+", action="extend", default=[], metavar="TARGET",
        help=f"{TARGETS} (default all)",
    )  # fmt: skip
    roll.add_argument("--waves", default="1,10%,100%", help="wave sizes (default 1,10%%,100%%)")
    roll.add_argument(
        "--halt-on", type=int, default=1, metavar="N", help="halt after N failed buses (default 1)"
    )
    roll.set_defaults(func=rollout_cmd)

    cancel = rsub.add_parser(
        "cancel",
        help="stop a rollout",
        description="Stop rollout ID: no further wave is assigned; the buses already given "
        "the release keep it (roll out another version to change that).",
    )
    connection_args(cancel)
    cancel.add_argument("rollout", metavar="ID", help="a rollout id (see status)")
    cancel.set_defaults(func=cancel_cmd)

    status = rsub.add_parser(
        "status",
        help="where each rollout stands",
        description="Every rollout, oldest first: version, state (running, halted, done, "
        "cancelled), wave k of n, buses per state (updated, assigned, pending, failed, "
        "refused) and why it halted; with ID, that rollout and each of its buses. --json: "
        "one JSON object a line instead.",
    )
    connection_args(status)
    status.add_argument("rollout", nargs="?", metavar="ID", help="one rollout, with its buses")
    status.add_argument("--json", action="store_true", help="JSON lines, whole records")
    status.set_defaults(func=status_cmd)

    lst = rsub.add_parser(
        "list",
        help="which bus runs what",
        description="Per bus central knows, by id: the release version it runs, its slot and "
        "update phase (as it reports them), and the version central wants on it. --json: one "
        "JSON object a line instead.",
    )
    connection_args(lst)
    lst.add_argument("--json", action="store_true", help="JSON lines, whole records")
    lst.set_defaults(func=list_cmd)


def rollout_cmd(args: argparse.Namespace) -> int:
    from protocols.release_requests import StartRollout

    prog = "busfleet central release rollout"
    request = StartRollout(
        version=args.version, to=args.to or ["all"], waves=args.waves, halt_on=args.halt_on
    )
    reply = ask_central(args, request, prog)
    if isinstance(reply, int):
        return reply
    r = reply.result
    print(
        f"rollout {r['rollout']}: {r['version']} to {r['buses']} buses in {r['waves']} waves;"
        f" wave 1 given to {r['assigned']}"
    )
    for row in reply.tables.get("assigned", []):
        print(f"  {row['bus']}: desired state version {row['version']}")
    if r.get("superseded"):
        print(f"  replaces rollout {r['superseded']}")
    print(json.dumps({**r, "assigned": [row["bus"] for row in reply.tables.get("assigned", [])]}))
    return 0


def cancel_cmd(args: argparse.Namespace) -> int:
    from protocols.release_requests import CancelRollout

    reply = ask_central(
        args, CancelRollout(rollout=args.rollout), "busfleet central release cancel"
    )
    if isinstance(reply, int):
        return reply
    r = reply.result
    print(f"rollout {r['id']}: cancelled at wave {r['wave']} of {r['waves']}")
    return 0


def status_cmd(args: argparse.Namespace) -> int:
    from protocols.release_requests import RolloutStatus

    records = read_central(
        args, RolloutStatus(rollout=args.rollout), "busfleet central release status"
    )
    if isinstance(records, int):
        return records
    for record in records:
        if args.json:
            print(json.dumps(record, ensure_ascii=False))
            continue
        print(progress_line(record))
        for bus in record.get("bus_states") or []:
            detail = f"  {terminal_text(bus['detail'])}" if bus.get("detail") else ""
            print(f"  wave {bus.get('wave')}  {bus.get('bus')}  {bus.get('state')}{detail}")
    if not records and not args.json:
        print("no rollout yet (busfleet central release rollout VERSION)")
    return 0


def progress_line(record: Mapping[str, Any]) -> str:
    """One rollout in one line: id, version, state, wave k/n, buses per state, why halted."""
    counts = ", ".join(f"{record.get(s, 0)} {s}" for s in STATES if record.get(s))
    text = (
        f"{record.get('id')}  {record.get('version')}  {record.get('state')}"
        f"  wave {record.get('wave')}/{record.get('waves')}  {counts or 'no bus'}"
    )
    if record.get("halted_reason"):
        text += f"  ({terminal_text(record['halted_reason'])})"
    return text


def list_cmd(args: argparse.Namespace) -> int:
    from protocols.release_requests import BusReleases

    records = read_central(args, BusReleases(), "busfleet central release list")
    if isinstance(records, int):
        return records
    if args.json:
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
        return 0
    print(f"{'bus':<16} {'runs':<10} {'slot':<8} {'phase':<11} {'wanted':<10} desired")
    for r in records:
        keys = ("bus", "running", "slot", "phase", "wanted", "desired")
        cells = [terminal_text(r.get(k) or "-") for k in keys]  # the bus's own words
        print(
            f"{cells[0]:<16} {cells[1]:<10} {cells[2]:<8} {cells[3]:<11} {cells[4]:<10} {cells[5]}"
        )
        if r.get("error"):
            print(f"  {terminal_text(r['error'])}")
    return 0
