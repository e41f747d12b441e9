"""The live role of a group of central instances: one leader at a time, by a lease.

Several `central serve --group G` instances share the ingest; one of them, the leader, also
plays the live role (central/service/service.py says what that is). It holds the role by a
lease in the database (central/store/lease.py, lease LEASE_NAME): taken when free or expired,
renewed every RENEW_S for LEASE_S.

Never two leaders by the holder's own clock: `holds()` is true only until the moment the
holder's last successful renewal *started* plus LEASE_S minus SAFETY_S, on the monotonic clock.
A holder that cannot renew in time (the database busy or gone, the process stalled) stops
playing the role before its lease expires in the database, so another instance, which may take
it only once the lease has expired by the database row, never plays it at the same time
(SAFETY_S covers the clock skew between machines and the commit's latency). A holder that
stops cleanly releases the lease: the next takes it at its next try, not LEASE_S later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from central.store import lease
from central.store.backend import is_store_failure
from central.store.db import CentralStore

__all__ = ["LEASE_NAME", "LEASE_S", "RENEW_S", "SAFETY_S", "Leadership"]

log = logging.getLogger("busfleet.central.leader")

LEASE_NAME = "live"
LEASE_S = 10.0  # how long a lease lasts without renewal: the longest takeover after a crash
RENEW_S = 2.0  # how often the holder renews it (and the others try to take it)
SAFETY_S = 3.0  # the holder stops this long before its lease would expire in the database


class Leadership:
    """Whether this instance (`holder`) plays the live role now; `run` keeps it up to date."""

    def __init__(
        self,
        store: CentralStore,
        holder: str,
        *,
        name: str = LEASE_NAME,
        lease_s: float = LEASE_S,
        renew_s: float = RENEW_S,
        safety_s: float = SAFETY_S,
    ) -> None:
        self.store = store
        self.holder = holder
        self.name = name
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.safety_s = safety_s
        self._until: float | None = None  # monotonic: the role is ours before this
        self.changes = 0  # times the role was taken or lost (logged)

    def holds(self) -> bool:
        """This instance plays the live role now (checked at every use, so a stalled event
        loop that wakes past the deadline publishes nothing)."""
        until = self._until  # read once: `release` may clear it on another thread
        return until is not None and time.monotonic() < until

    def step(self) -> bool:
        """Take or renew the lease once; returns `holds()` after it."""
        started = time.monotonic()
        try:
            now = time.time()
            who, _expires = lease.hold(self.store, self.name, self.holder, now, self.lease_s)
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            log.warning("could not renew the %s lease: %s", self.name, exc)
            return self.holds()  # the deadline of the last renewal still stands
        if who == self.holder:
            self._until = started + self.lease_s - self.safety_s
        else:
            self._until = None
        return self.holds()

    def release(self) -> None:
        """Give the role up at once (a clean stop): the next instance takes it at its next try."""
        self._until = None
        try:
            lease.release(self.store, self.name, self.holder)
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            log.warning("could not release the %s lease: %s", self.name, exc)

    async def run(self, changed: Callable[[bool], None]) -> None:
        """Renew or try to take the lease every `renew_s`; `changed(True/False)` on the event
        loop when the role is taken or lost (also when a missed renewal lets it lapse)."""
        was = False
        while True:
            now = self.step()
            if now != was:
                was = now
                self.changes += 1
                log.info("%s %s the live role", self.holder, "takes" if now else "lost")
                changed(now)
            wait = self.renew_s
            if now and self._until is not None:  # wake for the deadline if renewals fail
                wait = min(wait, max(0.0, self._until - time.monotonic()))
            await asyncio.sleep(wait)
