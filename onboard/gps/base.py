"""What every GPS backend is: a source of fixes that re-enters its device in one retry loop.

A backend implements `session()` (one connection to the receiver or gpsd, or one pass through
a log) and `from_config()`; `GpsSource.run()` is the one retry loop around sessions for all of
them, with the onboard backoff policy (onboard/backoff.py): a session that delivered fixes was
healthy, so the next failure waits little again; one that never did keeps the wait growing.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Self

from onboard.backoff import Backoff
from onboard.errors import RemoteError
from protocols.nmea.decoder import Fix

if TYPE_CHECKING:
    from onboard.gps.settings import GpsSection

__all__ = ["GpsSource", "OnFix"]

log = logging.getLogger("busfleet.onboard.gps")

OnFix = Callable[[Fix, float], None]
"""`on_fix(fix, monotonic_at)`: called in the event loop for every epoch's fix."""


class GpsSource(abc.ABC):
    """A GPS backend: `run()` delivers fixes to `on_fix` until cancelled."""

    # What a session may fail with and still be worth another try (the device's fault).
    retry_on: ClassVar[tuple[type[BaseException], ...]] = (RemoteError, OSError, TimeoutError)

    def __init__(
        self, on_fix: OnFix, *, backoff_max_s: float = 10.0, backoff_min_s: float = 1.0
    ) -> None:
        self.on_fix = on_fix
        self.fixes = 0  # fixes delivered, over all sessions
        self.retries = Backoff(backoff_max_s, first_s=backoff_min_s)

    @classmethod
    @abc.abstractmethod
    def from_config(cls, section: GpsSection, on_fix: OnFix) -> Self:
        """The backend as agent.toml's [gps] section describes it (ConfigError if it cannot)."""

    @property
    def rejected(self) -> int:
        """Input thrown away: bad NMEA lines, or 0 where gpsd decodes for us."""
        return 0

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the fixes come from, for the log."""

    @abc.abstractmethod
    async def session(self) -> bool:
        """One connection (or one pass through a log); True when the source is done for good.

        Returning False means "ended cleanly": a session that delivered fixes starts again at
        once (a looping replay), one that did not waits like a failure.
        """

    def deliver(self, fix: Fix, at: float) -> None:
        """Count a fix and hand it on."""
        self.fixes += 1
        self.on_fix(fix, at)

    async def run(self) -> None:
        """The one retry loop: sessions until cancelled (a finished replay returns)."""
        while True:
            before = self.fixes
            try:
                if await self.session():
                    return
                reason = "" if self.fixes > before else "ended without a fix"
            except self.retry_on as exc:
                reason = str(exc) or type(exc).__name__
            if self.fixes > before:
                self.retries.reset()
            if not reason:
                continue
            log.warning(
                "gps %s: %s; retry within %.1f s", self.describe(), reason, self.retries.bound()
            )
            await self.retries.wait()
