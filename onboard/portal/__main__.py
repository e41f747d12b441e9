"""Run the passenger portal alone: `python -m onboard.portal --config agent.toml`.

For a technician checking the Wi-Fi of a bus without the rest of the agent, for development
(with `firewall = "null"`), and for the network-namespace tests, which restart it like the
agent. Feedback and statistics are logged instead of going to central.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys

from onboard.config import load_config
from onboard.errors import ConfigError
from onboard.portal.service import build_portal

log = logging.getLogger("busfleet.onboard.portal")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m onboard.portal",
        description="Run the passenger Wi-Fi captive portal of agent.toml's [portal] section "
        "alone (feedback and statistics are logged, not sent).",
    )
    parser.add_argument("--config", required=True, help="agent.toml")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        config = load_config(args.config)
        service = build_portal(
            config.portal,
            data_dir=config.bus.data_dir,
            on_feedback=lambda c, t: log.info(
                "feedback %s", json.dumps({"category": c, "text": t})
            ),
            on_stats=lambda s: log.info("stats %s", json.dumps(s)),
            extra_blocked=[config.mqtt.host],
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(service.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
