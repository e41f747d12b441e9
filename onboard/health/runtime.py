"""The health task: an `agent_start` event once at every start, then a `health` event at start
and every `[health] interval_s`, both through the outbox (onboard/recorder.py), so they reach
central exactly once, outage or not.

The figures are read in a thread (onboard/health/collect.py: files, a directory walk for the
data budget, commands with a timeout), never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from onboard.health.collect import Collector, Figures, agent_version
from onboard.health.settings import HealthSection
from protocols.release import EVENT_AGENT_START
from protocols.schemas import Scalar

__all__ = ["EVENT_HEALTH", "HealthRuntime"]

log = logging.getLogger("busfleet.onboard.health")

EVENT_HEALTH = "health"

Record = Callable[[str, dict[str, Scalar]], object]  # Agent.record_event


class HealthRuntime:
    def __init__(
        self, section: HealthSection, data_dir: str | Path, record: Record, *, proc: str = "/proc"
    ) -> None:
        self.interval_s = section.interval_s
        self.record = record
        self.collector = Collector(data_dir, section.data_budget_mb, proc=proc)
        self.reports = 0
        self.last: Figures = {}

    async def run(self) -> None:
        """Say the agent started (version, slot), then report health until cancelled."""
        started: dict[str, Scalar] = {**agent_version()}
        self.record(EVENT_AGENT_START, started)
        log.info("agent %s started (slot %r)", started["version"], started["slot"])
        while True:
            self.last = await asyncio.to_thread(self.collector.collect)
            self.record(EVENT_HEALTH, {**self.last})
            self.reports += 1
            await asyncio.sleep(self.interval_s)
