"""The one reconnect policy of the onboard side: full jitter, growing by 1.5, capped.

aiomqtt's `_reconnect_loop` waits `random.uniform(0, 1.5 ** min(10, attempt))`; so do we,
scaled by `first_s` (1 s unless a part needs quicker first retries) and capped at `cap_s`.
Full jitter (from 0, not around a mean) spreads a fleet of buses that lost the same broker at
the same moment, which is what a reconnect storm needs; the exponent stops at 10 (about 58 s)
so that a cap above it means nothing surprising.

Every loop that re-enters a resource (the MQTT link, the GPS port, gpsd, the CAN bus, the local
web servers' bind, the portal, ad downloads) uses it:

    retries = Backoff(cap_s=10.0)
    async for attempt in retries:        # the first attempt at once, then waits in between
        try:
            await session()
            retries.reset()             # it was up: the next failure starts over
        except OSError as exc:
            log.warning("... %s (attempt %d)", exc, attempt)

`next_delay()` alone serves a loop that also wakes on an event (ads).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["GROWTH", "MAX_EXPONENT", "Backoff"]

GROWTH = 1.5
MAX_EXPONENT = 10


class Backoff:
    """Jittered, capped waits between attempts; `reset()` after a healthy session."""

    def __init__(
        self,
        cap_s: float = 30.0,
        *,
        first_s: float = 1.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if cap_s <= 0:
            raise ValueError(f"cap_s must be positive, not {cap_s}")
        self.cap_s = cap_s
        self.first_s = first_s  # the bound of the first wait (aiomqtt: 1 s)
        self.attempt = 0  # failures since the last reset
        self._uniform = (rng or random.Random()).uniform
        self._sleep = sleep

    def reset(self) -> None:
        """The resource was up: the next failure waits little again."""
        self.attempt = 0

    def bound(self) -> float:
        """The longest the next wait may be."""
        return min(self.cap_s, self.first_s * GROWTH ** min(MAX_EXPONENT, self.attempt))

    def next_delay(self) -> float:
        """The next wait in seconds (and count the attempt)."""
        delay = self._uniform(0.0, self.bound())
        self.attempt += 1
        return delay

    async def wait(self) -> float:
        """Sleep the next wait; returns how long."""
        delay = self.next_delay()
        await self._sleep(delay)
        return delay

    def __aiter__(self) -> AsyncIterator[int]:
        return self._attempts()

    async def _attempts(self) -> AsyncIterator[int]:
        # Yields the number of failures before this attempt (0: the first, or after a reset).
        while True:
            yield self.attempt
            await self.wait()
