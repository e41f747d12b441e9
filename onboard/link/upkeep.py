"""The outbox's housekeeping: forget old history, keep the disk budget, explain every gap.

Once a minute: stored records older than `history_s` are deleted, and the disk budget policy
(onboard/link/outbox.py) is applied; pending telemetry it had to drop is reported to central
as a `dropped` event (its sequence ranges), so that a gap is explained, never silent.
"""

from __future__ import annotations

import asyncio
import logging
import time

from onboard.link.outbox import Outbox
from onboard.recorder import EventRecorder

__all__ = ["EVERY_S", "OutboxUpkeep"]

log = logging.getLogger("busfleet.onboard.link")

EVERY_S = 60.0


class OutboxUpkeep:
    """The outbox's housekeeping task (`run()`)."""

    def __init__(self, outbox: Outbox, events: EventRecorder, *, history_s: float) -> None:
        self.outbox = outbox
        self.events = events
        self.history_s = history_s

    def once(self, now: float | None = None) -> int:
        """One round; returns how many pending records the budget dropped."""
        now = time.time() if now is None else now
        self.outbox.forget_history(now - self.history_s)
        dropped = self.outbox.enforce_budget(now)
        if not dropped:
            return 0
        text = ",".join(f"{a}-{b}" for a, b in dropped)
        count = sum(b - a + 1 for a, b in dropped)
        log.warning("outbox over its disk budget: dropped %d telemetry records", count)
        self.events.record("dropped", {"ranges": text[:4000], "records": count}, severity=2)
        return count

    async def run(self) -> None:
        while True:
            self.once()
            await asyncio.sleep(EVERY_S)
