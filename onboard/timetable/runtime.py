"""The bus's timetable: download the published version ahead of its valid_from, switch on time.

One named task, `timetable`. The desired document names a `TimetableRef` (version, sha256,
size, url, valid_from); `offer` takes it. The task fetches the package into a content-addressed
directory with the ads' cache and resumable downloader (onboard/ads/cache.py, download.py:
partial files, `Range: bytes=N-`, size and sha256 checked before a file counts), reads it with
`read_package` (the same parser as a local GTFS feed) and only then stages it: a package that
fails its hash or does not read is refused, the running version runs on and the reason is
reported (`error` + a `timetable_refused` event). At valid_from, by the bus's own clock and
without any link, the staged version becomes the running one and `on_feed` hands its feed to
the journey (which lets a trip in progress finish on the version it started with).

What runs and what is staged is kept in agent.sqlite (onboard/timetable/store.py), so a
restarted bus runs the same version without central. On disk: the running package and the
staged one, nothing older (`MediaCache.prune`), all within `budget_bytes`.

A staged feed waits in memory only from PRELOAD_S before its valid_from (a big feed costs
tens of MB; reading it takes seconds, so it is read ahead, not at the switch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp

from onboard.ads.cache import MediaCache
from onboard.ads.download import DownloadError, MediaCorrupt, fetch_verified
from onboard.backoff import Backoff
from onboard.store import AgentStore
from onboard.timetable.store import TimetableStore
from protocols.errors import GtfsError
from protocols.gtfs.feed import Feed
from protocols.gtfs.package import package_sha256, read_package
from protocols.schemas import Scalar, TimetableRef, TimetableState

__all__ = ["MAX_WAIT_S", "PRELOAD_S", "TimetableRuntime"]

log = logging.getLogger("busfleet.onboard.timetable")

RETRY_MIN_S = 5.0
RETRY_MAX_S = 300.0
MAX_WAIT_S = 60.0  # re-read the clock at least this often (it may be set from GPS)
PRELOAD_S = 600.0  # read a staged package this long before its valid_from
MIME = "application/zip"

OnEvent = Callable[[str, dict[str, Scalar], int], object]  # the agent returns the seq


def load_package(path: Path, sha256: str) -> Feed:
    """The feed in a package file, after checking its hash again (disks rot); GtfsError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GtfsError(f"cannot read the package: {exc}") from exc
    actual = package_sha256(data)
    if actual != sha256:
        raise GtfsError(f"hash mismatch: expected {sha256[:12]}, got {actual[:12]}")
    return read_package(data)


class TimetableRuntime:
    """Which timetable runs, which is staged, and the task that fetches and switches."""

    def __init__(
        self,
        store: AgentStore,
        root: str | Path,
        *,
        on_feed: Callable[[Feed, TimetableRef], None],
        on_event: OnEvent,
        on_change: Callable[[], None],
        budget_bytes: int = 500_000_000,
        base_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.slots = TimetableStore(store)
        self.cache = MediaCache(root, budget_bytes)
        self.on_feed, self.on_event, self.on_change = on_feed, on_event, on_change
        self.base_url = base_url
        self.clock = clock
        self.running: TimetableRef | None = None  # set once its package has read (`load_running`)
        self.staged: TimetableRef | None = self.slots.load("staged")
        self.wanted: TimetableRef | None = None  # what the desired document names
        self.error: str | None = None  # why the last package was refused
        self.refused: set[str] = set()  # packages that can never run here: not fetched again
        self.counters: Counter[str] = Counter()
        self._staged_feed: Feed | None = None
        self._wake = asyncio.Event()

    # -- inputs ---------------------------------------------------------------------------
    def offer(self, ref: TimetableRef | None) -> None:
        """Follow the applied desired state's timetable (None: keep what runs)."""
        if ref is not None and self.running is not None and ref.sha256 == self.running.sha256:
            ref = None  # the package that runs already
        if ref != self.wanted:
            self.wanted = ref
            self._wake.set()

    def clock_set(self) -> None:
        """The bus's clock was set (from GPS, NTP): look at the staged version's time again now
        rather than at the next MAX_WAIT_S."""
        self._wake.set()

    def report(self, *, local: bool) -> TimetableState:
        """For the reported state; `local`: the journey runs on agent.toml's bootstrap feed."""
        running = self.running
        return TimetableState(
            running=running.version if running else None,
            staged=self.staged.version if self.staged else None,
            source="central" if running else ("local" if local else ""),
            error=self.error,
        )

    async def load_running(self) -> Feed | None:
        """The running version's feed from disk, at start (None: none, or it no longer reads:
        then the error says why and central's next document brings it again)."""
        ref = self.slots.load("running")
        if ref is None:
            return None
        feed = await self._read(ref)
        if feed is None:
            self.slots.save("running", None)
            return None
        self.running = ref
        log.info("timetable v%d runs (from disk)", ref.version)
        return feed

    # -- one pass -------------------------------------------------------------------------
    async def step(self, session: aiohttp.ClientSession) -> None:
        """Switch if the staged version is due, fetch and stage what is wanted, switch again.

        Raises DownloadError when the package could not be fetched (partial bytes are kept)."""
        await self._switch_if_due()
        wanted = self.wanted
        if wanted is None or wanted in (self.running, self.staged):
            return
        if self.staged is not None:  # central wants another version than the one staged
            log.info("timetable v%d unstaged: v%d is wanted", self.staged.version, wanted.version)
            self._set_staged(None, None)
        if wanted.sha256 in self.refused:
            return
        await self._stage(session, wanted)
        await self._switch_if_due()

    async def _stage(self, session: aiohttp.ClientSession, ref: TimetableRef) -> None:
        running = self.running
        need = ref.size + (running.size if running else 0)
        if need > self.cache.budget_bytes:
            self.refused.add(ref.sha256)
            self._refuse(ref, f"{need} bytes with the running version: over the disk budget "
                         f"of {self.cache.budget_bytes}")  # fmt: skip
            return
        self.cache.prune(self._keep(ref))
        label = f"timetable v{ref.version}"
        try:
            await fetch_verified(
                session, self._url(ref), self.cache,
                sha256=ref.sha256, size=ref.size, mime=MIME, label=label,
            )  # fmt: skip
        except MediaCorrupt as exc:
            self.counters["corrupt"] += 1
            self._refuse(ref, str(exc))
            raise
        feed = await self._read(ref)
        if feed is None:
            return
        soon = ref.valid_from is None or self.clock() >= ref.valid_from - PRELOAD_S
        self._set_staged(ref, feed if soon else None)
        self.error = None
        self.cache.prune(self._keep())
        self.counters["staged"] += 1
        log.info("timetable v%d staged (valid from %s)", ref.version, ref.valid_from)
        self.on_change()

    async def _switch_if_due(self) -> None:
        staged = self.staged
        if staged is None:
            return
        now = self.clock()
        if self._staged_feed is None and (
            staged.valid_from is None or now >= staged.valid_from - PRELOAD_S
        ):
            self._staged_feed = await self._read(staged)
            if self._staged_feed is None:
                self._set_staged(None, None)
                return
        if staged.valid_from is not None and now < staged.valid_from:
            return
        feed = self._staged_feed
        assert feed is not None
        self.slots.promote(staged)
        self.running, self.staged, self._staged_feed = staged, None, None
        self.counters["switches"] += 1
        self.cache.prune(self._keep())
        log.info("timetable v%d runs now", staged.version)
        self.on_feed(feed, staged)
        self.on_event("timetable_switched", {"version": staged.version}, 0)
        self.on_change()

    def until_due(self) -> float:
        """Seconds until the staged version needs the task (read ahead, or switch)."""
        staged = self.staged
        if staged is None:
            return MAX_WAIT_S
        if staged.valid_from is None:
            return 0.0
        at = staged.valid_from - (PRELOAD_S if self._staged_feed is None else 0.0)
        return max(0.0, min(MAX_WAIT_S, at - self.clock()))

    # -- helpers --------------------------------------------------------------------------
    async def _read(self, ref: TimetableRef) -> Feed | None:
        """The package's feed, read in a thread; None (refused, file removed) if it fails."""
        path = self.cache.path(ref.sha256)
        if path is None:
            self._refuse(ref, "its package is not on the bus")
            return None
        try:
            return await asyncio.to_thread(load_package, path, ref.sha256)
        except GtfsError as exc:
            self.refused.add(ref.sha256)
            self.cache.prune({s for s in self.cache.files if s != ref.sha256})
            self._refuse(ref, f"the package does not read: {exc}")
            return None

    def _refuse(self, ref: TimetableRef, why: str) -> None:
        error = f"timetable v{ref.version} refused: {why}"
        if error == self.error:
            return  # said already (a retry of the same bytes)
        self.error = error
        self.counters["refused"] += 1
        run = f"v{self.running.version}" if self.running else "nothing"
        log.error("%s; %s runs on", error, run)
        self.on_event(
            "timetable_refused",
            {"version": ref.version, "sha256": ref.sha256, "reason": why[:200]},
            1,
        )
        self.on_change()

    def _set_staged(self, ref: TimetableRef | None, feed: Feed | None) -> None:
        self.slots.save("staged", ref)
        self.staged, self._staged_feed = ref, feed
        self.on_change()

    def _keep(self, *more: TimetableRef) -> set[str]:
        refs = (self.running, self.staged, *more)
        return {r.sha256 for r in refs if r is not None}

    def _url(self, ref: TimetableRef) -> str:
        if self.base_url:
            return f"{self.base_url.rstrip('/')}/{ref.sha256}.zip"
        return ref.url

    # -- the task -------------------------------------------------------------------------
    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=30)
        # The onboard backoff policy; a loop of its own since a new document also wakes it.
        retries = Backoff(RETRY_MAX_S, first_s=RETRY_MIN_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                self._wake.clear()
                wait = MAX_WAIT_S
                try:
                    await self.step(session)
                    retries.reset()
                except DownloadError as exc:
                    self.counters["download_errors"] += 1
                    wait = retries.next_delay()
                    log.warning("timetable download: %s; again in %.0f s", exc, wait)
                wait = min(wait, self.until_due())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
