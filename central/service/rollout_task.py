"""The service's rollout task: every TICK_S, the leader moves the running rollouts on.

`central.rollouts.advance` reads what buses reported and recorded (central's store: the ingest
of every instance of a group writes there) and assigns the next wave where the last is done;
this task publishes the desired documents it wrote (through the service's one client) and
raises a `rollout_halted` alarm (central/service/alarm_center.py) when a rollout halts, once:
the halt is a state change in the store, taken by one step only. A halted rollout that is
cancelled (or superseded by a new rollout) has its alarm cleared. A step that cannot reach the
database is logged and counted (`rollout_errors`) and tried again at the next tick.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from central.desired import Published
from central.fleet.alarms import CLEAR, RAISE, Change
from central.rollouts import advance
from central.service.alarm_center import AlarmCenter
from central.store.backend import is_store_failure
from central.store.db import CentralStore

__all__ = ["ALARM_KIND", "TICK_S", "RolloutTask"]

log = logging.getLogger("busfleet.central.rollouts")

TICK_S = 1.0  # how soon after a wave is done the next is assigned (a few queries a tick)
ALARM_KIND = "rollout_halted"
ALARM_SEVERITY = 3


class RolloutTask:
    def __init__(self, store: CentralStore, alarms: AlarmCenter) -> None:
        self.store = store
        self.alarms = alarms
        self.counters: collections.Counter[str] = collections.Counter()

    def step(self, now: float) -> Published:
        """One step of every running rollout; the desired documents to publish. The alarms
        it raises or clears are queued in the alarm center (the caller publishes them)."""
        done = advance(self.store, now)
        for rollout, bus, text in done.halted:
            self.counters["rollouts_halted"] += 1
            log.warning("%s", text)
            change = Change(
                RAISE, ALARM_KIND, now, subject=rollout, severity=ALARM_SEVERITY, text=text[:200]
            )
            self.alarms.on_central(bus, change, now)
        for rollout, bus in done.cancelled:
            self.alarms.on_central(bus, Change(CLEAR, ALARM_KIND, now, subject=rollout), now)
        if done.published:
            log.info("rollouts: %d buses given a release", len(done.published))
        return done.published

    async def run(
        self,
        live: Callable[[], bool],
        send: Callable[[Published], None],
        send_alarms: Callable[[], None],
    ) -> None:
        """Every TICK_S while `live()` (the leader): a step, its documents `send`, its alarms."""
        while True:
            if live():
                try:
                    send(self.step(time.time()))
                    send_alarms()
                except Exception as exc:
                    if not is_store_failure(exc):  # a bug: not to be counted away
                        raise
                    self.counters["rollout_errors"] += 1
                    log.warning("rollouts: step failed (%s); again in %.0f s", exc, TICK_S)
            await asyncio.sleep(TICK_S)
