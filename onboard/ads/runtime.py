"""The agent's ads: follow the desired playlist, fetch its media, play it, prove the plays.

Two named tasks. `ads-sync` brings the media cache in line with the wanted playlist: it
downloads (resuming) everything the playlist may play in the coming `lookahead_days`,
checks every hash, and only then switches the player to it, in one step, after writing it
to disk (`active.json`) so that a bus restarted in a tunnel plays on. `ads-play` steps the
player on the wall clock. Neither needs the uplink once the files are on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp

from onboard.ads.cache import MediaCache
from onboard.ads.download import DownloadError, MediaCorrupt, download
from onboard.ads.player import Player, PlayRecord, Showing
from onboard.backoff import Backoff
from protocols.ads.playlist import Item, Playlist, decode_playlist, encode_playlist
from protocols.errors import CodecError
from protocols.schemas import DesiredState

log = logging.getLogger("busfleet.onboard.ads")

RESYNC_S = 600.0  # with everything in place, look again (the lookahead window moves on)
RETRY_MIN_S = 5.0
RETRY_MAX_S = 300.0
MAX_STEP_WAIT_S = 60.0  # re-read the clock at least this often (it may be set from GPS)


class AdsRuntime:
    def __init__(
        self,
        bus_id: str,
        media_dir: str | Path,
        on_play: Callable[[PlayRecord], None],
        *,
        budget_bytes: int = 2_000_000_000,
        lookahead_days: int = 2,
        media_url: str = "",
        record_location: bool = False,
        max_accuracy_m: float = 50.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = MediaCache(media_dir, budget_bytes)
        self.state_path = Path(media_dir) / "active.json"
        self.lookahead_days = lookahead_days
        self.media_url = media_url
        self.clock = clock
        self.on_show: Callable[[Showing | None], None] = lambda _s: None
        self.player = Player(
            bus_id,
            have=self.cache,
            on_play=on_play,
            on_show=self._shown,
            record_location=record_location,
            max_accuracy_m=max_accuracy_m,
        )
        self.counters: Counter[str] = Counter()
        self._assigned_route: str | None = None
        self._journey_route: str | None = None
        self._stop_area: str | None = None
        self._verified: set[str] = set()  # hashed in this process since it was cached
        self.active = self._load_active()
        self.player.switch(self.active)
        self.wanted = self.active
        self._sync_wake = asyncio.Event()
        self._play_wake = asyncio.Event()

    # -- inputs ---------------------------------------------------------------------------
    def offer(self, desired: DesiredState | None) -> None:
        """Follow the applied desired state: its playlist and the route it assigns."""
        assignment = desired.assignment if desired else None
        self._assigned_route = assignment.route_id if assignment else None
        self._set_route()
        wanted = desired.ads if desired else None
        if wanted != self.wanted:
            self.wanted = wanted
            self._sync_wake.set()

    def set_journey(self, route: str | None, stop_area: str | None) -> None:
        """Where the journey tracker says the bus is: its route wins over the assigned one,
        and the stop area goes into the proofs of play."""
        self._journey_route = route
        self._stop_area = stop_area
        self._set_route()

    def _set_route(self) -> None:
        self.player.set_route(self._journey_route or self._assigned_route, self._stop_area)

    def on_position(self, lat: float, lon: float, accuracy_m: float | None) -> None:
        self.player.update_position(lat, lon, accuracy_m)

    def _shown(self, showing: Showing | None) -> None:
        if showing is not None:
            self.cache.touch(showing.media)
        self.on_show(showing)

    # -- sync -----------------------------------------------------------------------------
    def needed(self, playlist: Playlist) -> dict[str, Item]:
        today = playlist.local(self.clock()).date()
        return playlist.needed_media(today, self.lookahead_days, self.player.bus)

    async def sync_once(self, session: aiohttp.ClientSession) -> bool:
        """One pass: fetch and verify what the wanted playlist needs, then switch to it.

        Returns True when the player runs the wanted playlist with everything it needs;
        raises DownloadError when a file could not be fetched (partial bytes are kept).
        """
        wanted = self.wanted
        if wanted is None:
            self._switch(None)
            return True
        needed = self.needed(wanted)
        total = sum(i.size for i in needed.values())
        if total > self.cache.budget_bytes:
            self.counters["over_budget"] += 1
            log.error(
                "playlist %s needs %d bytes of media, over the budget of %d: not switching",
                wanted.id, total, self.cache.budget_bytes,
            )  # fmt: skip
            return False
        missing = {s: i for s, i in needed.items() if not self.cache.has(s)}
        keep = set(needed) | (set(i.media for i in self.active.items) if self.active else set())
        self.cache.evict(keep, room_for=sum(i.size for i in missing.values()))
        for sha, item in missing.items():
            url = wanted.media_url_of(sha, self.media_url)
            if not url.startswith(("http://", "https://")):
                raise DownloadError(f"{item.id}: no media URL (set ads.media_url)")
            try:
                await download(session, url, item, self.cache)
            except MediaCorrupt:
                self.counters["corrupt"] += 1
                raise
            self.counters["downloaded"] += 1
            self._verified.add(sha)
        for sha in needed:
            if sha not in self._verified:
                if not self.cache.verify(sha):
                    raise MediaCorrupt(f"cached media {sha[:12]} no longer matches its hash")
                self._verified.add(sha)
        self._switch(wanted)
        self.cache.evict({i.media for i in wanted.items})
        return True

    def _switch(self, playlist: Playlist | None) -> None:
        if playlist == self.active:
            return
        self._save_active(playlist)
        self.active = playlist
        self.player.switch(playlist)
        self.counters["switches"] += 1
        log.info(
            "ads: now playing %s", f"{playlist.id} r{playlist.revision}" if playlist else "nothing"
        )
        self._play_wake.set()

    def _load_active(self) -> Playlist | None:
        try:
            return decode_playlist(self.state_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, CodecError) as exc:
            log.warning("ignored the saved playlist: %s", exc)
            return None

    def _save_active(self, playlist: Playlist | None) -> None:
        if playlist is None:
            self.state_path.unlink(missing_ok=True)
            return
        tmp = self.state_path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(encode_playlist(playlist))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    # -- tasks ----------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._sync_loop(), name="ads-sync")
            tg.create_task(self._play_loop(), name="ads-play")

    async def _sync_loop(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=30)
        # The onboard backoff policy; a loop of its own since a new playlist also wakes it.
        retries = Backoff(RETRY_MAX_S, first_s=RETRY_MIN_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                self._sync_wake.clear()
                try:
                    wait = RESYNC_S if await self.sync_once(session) else RETRY_MAX_S
                    retries.reset()
                except DownloadError as exc:
                    self.counters["download_errors"] += 1
                    wait = retries.next_delay()
                    log.warning("ads download: %s; again in %.0f s", exc, wait)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._sync_wake.wait()

    async def _play_loop(self) -> None:
        try:
            while True:
                self._play_wake.clear()
                next_at = self.player.step(self.clock())
                wait = min(MAX_STEP_WAIT_S, max(0.0, next_at - self.clock()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._play_wake.wait()
        finally:
            self.player.stop()
