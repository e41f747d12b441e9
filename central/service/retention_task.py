"""The service's retention task: purge what is past its time, in small transactions.

At start and then every `retention_every_s`, the purge (central/retention.py) runs one
transaction of at most `retention_batch_rows` rows at a time and sleeps PAUSE_S between them,
so the ingest's group commits get the write lock in between: a purge of a month of backlog
slows the ingest a little for a while, it never stops it. What went is logged and counted
(`retention_purged_{kind}` in CentralStats); a purge that fails (the database locked too
long) is counted (`retention_errors`) and tried again at the next run.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from central.config import CentralConfig
from central.retention import RetentionPolicy, purge
from central.store.backend import is_store_failure
from central.store.db import CentralStore

log = logging.getLogger("busfleet.central.retention")

PAUSE_S = 0.2  # between two purge transactions: room for the ingest's commits


class RetentionTask:
    def __init__(self, store: CentralStore, config: CentralConfig) -> None:
        self.store = store
        self.policy = RetentionPolicy.from_config(config)
        self.every_s = config.retention_every_s
        self.batch_rows = config.retention_batch_rows
        self.pause_s = PAUSE_S
        self.counters: collections.Counter[str] = collections.Counter()

    async def run(self) -> None:
        if not self.policy.cutoffs(time.time()):
            log.info("retention: every kind is kept forever")
            return
        while True:
            await self.purge_once(time.time())
            await asyncio.sleep(self.every_s)

    async def purge_once(self, now: float) -> dict[str, int]:
        """One purge at `now`; returns the rows removed per kind.

        A purge that cannot get the write lock in time (an import holds it: "database is
        locked" after the busy timeout) or write at all (either backend failing: the
        database's error, backend.is_store_failure) is logged, counted
        (`retention_errors`) and tried again at the next run: the service goes on, and the
        batches done so far are committed, each a transaction of its own."""
        removed: collections.Counter[str] = collections.Counter()
        try:
            for kind, rows in purge(self.store, self.policy, now, self.batch_rows):
                removed[kind] += rows
                self.counters[f"retention_purged_{kind}"] += rows
                await asyncio.sleep(self.pause_s)
        except Exception as exc:
            if not is_store_failure(exc):  # a bug: not to be counted away
                raise
            self.counters["retention_errors"] += 1
            log.warning("retention: purge stopped (%s); again in %.0f s", exc, self.every_s)
        self.counters["retention_runs"] += 1
        if removed:
            log.info("retention purged %s", ", ".join(f"{n} {kind}" for kind, n in removed.items()))
        return dict(removed)
