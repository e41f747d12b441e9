"""The outbox's housekeeping: forget old history, keep the disk budget, explain every gap.

Once a minute: stored records older than `history_s` are deleted, and the disk budget policy
(onboard/link/outbox.py) is applied; pending telemetry it had to drop is reported to central
as `dropped` events (their sequence ranges), so that a gap is explained, never silent. Thinning
a long outage leaves one gap a minute: thousands of ranges. Each event names at most
`RANGES_CHARS` characters of them, and as many events as needed name them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from onboard.link.outbox import Outbox
from onboard.recorder import EventRecorder

__all__ = ["EVERY_S", "RANGES_CHARS", "OutboxUpkeep", "range_notes"]

log = logging.getLogger("busfleet.onboard.link")

EVERY_S = 60.0
RANGES_CHARS = 4000  # ranges text per `dropped` event: each event stays small


def range_notes(
    dropped: list[tuple[int, int]], limit: int = RANGES_CHARS
) -> Iterator[tuple[str, int]]:
    """("first-last,first-last,...", records) pieces of at most `limit` characters each,
    cut between ranges, together naming every range once and in order."""
    parts: list[str] = []
    size = count = 0
    for first, last in dropped:
        text = f"{first}-{last}"
        if parts and size + 1 + len(text) > limit:
            yield ",".join(parts), count
            parts, size, count = [], 0, 0
        size += len(text) + (1 if parts else 0)
        parts.append(text)
        count += last - first + 1
    if parts:
        yield ",".join(parts), count


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
        # The drop and its notes land together: a crash in between cannot leave a silent gap.
        with self.outbox.transaction():
            dropped = self.outbox.enforce_budget(now)
            notes = list(range_notes(dropped))
            for text, records in notes:
                self.events.record("dropped", {"ranges": text, "records": records}, severity=2)
        if not dropped:
            return 0
        count = sum(b - a + 1 for a, b in dropped)
        log.warning(
            "outbox over its disk budget: dropped %d telemetry records (%d ranges, %d notes)",
            count,
            len(dropped),
            len(notes),
        )
        return count

    async def run(self) -> None:
        while True:
            self.once()
            await asyncio.sleep(EVERY_S)
