"""The one announcement queue: by priority (LIVE > STOP > AD), first come first within one.

Pure and bounded (STYLE 4): at most `limit` waiting; over it, the lowest-priority oldest one is
dropped and handed back to be logged. An utterance that waited longer than its priority allows
(a "next stop" after the bus has left that stop behind) is stale: `pop` hands it back as
dropped instead of playing it. Time is an argument.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from onboard.audio.api import LIVE, OnStart, Utterance

__all__ = ["AnnouncementQueue", "Queued"]

LIVE_MAX_WAIT_S = 600.0  # city hall's word keeps longer than a stop announcement


@dataclass(order=True, slots=True)
class Queued:
    sort: tuple[int, int]  # (-priority, arrival number): heap order
    utterance: Utterance = field(compare=False)
    on_start: OnStart | None = field(compare=False)
    queued_at: float = field(compare=False)


class AnnouncementQueue:
    def __init__(self, *, max_wait_s: float = 60.0, limit: int = 64) -> None:
        self.max_wait_s = max_wait_s
        self.limit = limit
        self._heap: list[Queued] = []
        self._numbers = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, utterance: Utterance, on_start: OnStart | None, now: float) -> Queued | None:
        """Queue it; the one dropped to stay within `limit` (maybe this one), else None."""
        item = Queued((-utterance.priority, next(self._numbers)), utterance, on_start, now)
        heapq.heappush(self._heap, item)
        if len(self._heap) <= self.limit:
            return None
        # the lowest priority, and of those the oldest: its news is the stalest
        worst = min(self._heap, key=lambda q: (-q.sort[0], q.sort[1]))
        self._heap.remove(worst)
        heapq.heapify(self._heap)
        return worst

    def max_wait(self, utterance: Utterance) -> float:
        return (
            max(self.max_wait_s, LIVE_MAX_WAIT_S) if utterance.priority >= LIVE else self.max_wait_s
        )

    def pop(self, now: float) -> tuple[Queued | None, list[Queued]]:
        """The next utterance to play (None: nothing waits) and the stale ones dropped."""
        stale: list[Queued] = []
        while self._heap:
            item = heapq.heappop(self._heap)
            if now - item.queued_at > self.max_wait(item.utterance):
                stale.append(item)
                continue
            return item, stale
        return None, stale
