"""`busfleet slots install|status|rollback`: the A/B slots of a bus's agent (onboard/update/).

`install` creates the first slot from a release tar (`busfleet release build`) and its state,
and copies the launcher systemd runs; `status` shows which slot runs, which is kept, a trial;
`rollback` makes the previous slot current again by hand (stop the service first).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "slots",
        help="the agent's A/B software slots on a bus (install, status, rollback)",
        description="The agent runs from a slot (a virtual environment per release) under the "
        "launcher (deploy/README.md, 'Software updates').",
    )
    slots = p.add_subparsers(dest="slots_command", metavar="ACTION", required=True)
    install = slots.add_parser(
        "install",
        help="install a release tar into a slot and make it current (the first slot)",
    )
    install.add_argument("release", help="a release tar (busfleet-VERSION.tar)")
    install.add_argument("--slots", required=True, help="the slots directory")
    install.add_argument(
        "--launcher", default="", help="also copy the launcher here (/opt/busfleet/launcher.py)"
    )
    install.set_defaults(func=run_install)
    status = slots.add_parser("status", help="which slot runs, which is kept, a trial")
    status.add_argument("--slots", required=True, help="the slots directory")
    status.set_defaults(func=run_status)
    back = slots.add_parser(
        "rollback", help="make the previous slot current again (stop the service first)"
    )
    back.add_argument("--slots", required=True, help="the slots directory")
    back.set_defaults(func=run_rollback)


def run_install(args: argparse.Namespace) -> int:
    from onboard.errors import UpdateError
    from onboard.update import launcher, slots

    where = Path(args.slots)
    try:
        name = slots.install_release(Path(args.release), where)
    except (UpdateError, OSError) as exc:
        print(f"busfleet slots install: {exc}", file=sys.stderr)
        return 1
    state = slots.first_slot(where, name)
    slots.prune(where, state)
    print(f"{where / name}: current" + (f" (previous {state.previous})" if state.previous else ""))
    if args.launcher:
        target = Path(args.launcher)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(launcher.__file__, target)
        print(f"{target}: the launcher (systemd's ExecStart runs it with python3)")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from onboard.update.launcher import SlotError, read_failure, read_state

    where = Path(args.slots)
    try:
        state = read_state(where)
    except SlotError as exc:
        print(f"busfleet slots status: {exc}", file=sys.stderr)
        return 1
    print(f"current:  {state.current}")
    print(f"previous: {state.previous or '-'}")
    if state.trial is not None:
        t = state.trial
        print(f"trial:    {t.starts}/{t.max_starts} starts, {t.timeout_s:g} s to prove itself")
    for version, why in state.failed.items():
        print(f"failed:   {version}: {why}")
    for version, why in state.refused.items():
        print(f"refused:  {version}: {why}")
    failure = read_failure(where)
    if failure is not None:
        print(f"not yet reported: {failure.get('version')} rolled back: {failure.get('reason')}")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from onboard.errors import UpdateError
    from onboard.update.launcher import SlotError
    from onboard.update.slots import roll_back_by_hand

    try:
        state = roll_back_by_hand(Path(args.slots))
    except (UpdateError, SlotError) as exc:
        print(f"busfleet slots rollback: {exc}", file=sys.stderr)
        return 1
    print(f"current: {state.current} (previous {state.previous})")
    return 0
