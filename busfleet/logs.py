"""Log setup for every busfleet process: one line per event, key facts first.

Services log through the standard logging module with component loggers
(`busfleet.onboard.link`, `busfleet.central.ingest`, ...); this sets the format once, with the
process's identity (a bus id, "central") bound into every line.
"""

from __future__ import annotations

import logging
import sys


def setup_logging(identity: str, level: str = "INFO", stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)-7s {identity} %(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiomqtt/paho and python-can are chatty at INFO; their warnings still show.
    for noisy in ("mqtt", "can", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
