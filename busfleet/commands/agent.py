"""`busfleet agent --config bus.toml`: the onboard agent, headless."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agent",
        help="run the onboard agent of one bus",
        description="Run the bus agent: GPS, CAN, telemetry with an on-disk outbox, the MQTT "
        "link to city hall and the desired/reported state. Stops cleanly on SIGTERM/Ctrl-C.",
    )
    p.add_argument(
        "--config", required=True, help="agent TOML file (see deploy/agent.example.toml)"
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from busfleet.logs import setup_logging
    from busfleet.runner import run_service
    from onboard.agent import Agent
    from onboard.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"busfleet agent: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.bus.id, args.log_level)
    from onboard.logs.disk import attach_for_agent

    attach_for_agent(config)  # the log on disk too, for `busfleet central logs`
    agent = Agent(config)
    run_service(agent.run(), healthy=agent.healthy)  # the watchdog pings while it samples
    # The launcher (onboard/update/launcher.py) reads it: start the new slot, or roll back.
    return agent.update.exit_code or 0
