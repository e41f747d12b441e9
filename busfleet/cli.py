"""The `busfleet` console script: one entry point, subcommands registered by their modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module in busfleet/commands registers its subcommands; imports of heavy libraries
# stay inside the handlers so that `busfleet --help` is fast.
COMMAND_MODULES = (
    "demo",
    "agent",
    "central",
    "sim",
    "gps",
    "can",
    "bus",
    "release",
    "slots",
    "audio",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="busfleet",
        description="Steer a city bus fleet from city hall: agent, central service, dashboard, "
        "simulators and technician tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"busfleet.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"busfleet.commands.{name}":
                raise
            continue  # a command group not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
