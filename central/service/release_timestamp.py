"""central's timestamp task: keep the release repository's metadata fresh while its keys are here.

The timestamp key is online at central (TUF practice): every CHECK_EVERY_S the task re-signs
the timestamp once half its day has passed, and targets and snapshot a month before they
expire if their keys are here (central/releases/repository.py: `keep_fresh`). Without the
timestamp key (the repository signed elsewhere) the task does nothing but say so. In a group
of instances only the leader signs (`live()`), so two instances never race for a version;
they must then share the repository's folder. A failure (the disk, a key that root no longer
names) is logged and counted, and tried again at the next check: central goes on serving.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from pathlib import Path

from central.releases.repository import ReleaseRepoError, has_key, keep_fresh

__all__ = ["CHECK_EVERY_S", "TimestampTask"]

log = logging.getLogger("busfleet.central.releases")

CHECK_EVERY_S = 600.0  # the timestamp lasts a day and is re-signed after half of it


class TimestampTask:
    def __init__(
        self, repo_dir: str | Path, live: Callable[[], bool], every_s: float = CHECK_EVERY_S
    ) -> None:
        self.repo_dir = Path(repo_dir)
        self.live = live
        self.every_s = every_s
        self.counters: collections.Counter[str] = collections.Counter()

    async def run(self) -> None:
        if not has_key(self.repo_dir, "timestamp"):
            log.info("release repository %s: no timestamp key here, not re-signed", self.repo_dir)
            return
        while True:
            if self.live():
                await self.check_once()
            await asyncio.sleep(self.every_s)

    async def check_once(self) -> list[str]:
        """Re-sign what is due; returns the roles signed."""
        try:
            done = await asyncio.to_thread(keep_fresh, self.repo_dir)
        except (ReleaseRepoError, OSError) as exc:
            self.counters["release_sign_errors"] += 1
            log.warning("release repository %s: cannot re-sign (%s)", self.repo_dir, exc)
            return []
        if done:
            self.counters["release_resigned"] += 1
            log.info("release repository %s: re-signed %s", self.repo_dir, ", ".join(done))
        return done
