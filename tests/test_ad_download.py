"""Media on the bus: downloads resume after a cut, wrong bytes never reach the screen, the
switch to a new playlist waits for every file, and the cache keeps to its disk budget.

A real aiohttp server on a loopback port serves the bytes (tests/ads_helpers.FlakyMedia): it
can drop the connection after N bytes of a body, or flip a byte of a file.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from onboard.ads import AdsRuntime, PlayRecord, Showing
from onboard.ads.cache import MediaCache
from onboard.ads.download import DownloadError, MediaCorrupt, download
from protocols.ads.playlist import Playlist
from protocols.schemas import DesiredState
from tests.ads_helpers import FlakyMedia, item_for, png, simple_playlist

T0 = 1_750_000_000.0


def blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Screen:
    """What the display's ad slot was asked to show, and the proofs of play."""

    def __init__(self) -> None:
        self.shown: list[str | None] = []
        self.plays: list[PlayRecord] = []

    def show(self, s: Showing | None) -> None:
        self.shown.append(s.item_id if s else None)


def runtime(tmp_path: Path, screen: Screen, budget: int = 10_000_000) -> AdsRuntime:
    rt = AdsRuntime("bus-1", tmp_path / "media", screen.plays.append, budget_bytes=budget,
                    clock=lambda: T0)  # fmt: skip
    rt.on_show = screen.show
    return rt


def desired(pl: Playlist | None, version: int = 1) -> DesiredState:
    return DesiredState(bus="bus-1", version=version, playlist=pl.id if pl else None, ads=pl)


async def test_a_download_cut_in_the_middle_resumes_where_it_stopped(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    data = blob(600_000, 1)
    item = item_for("big", data, mime="video/mp4")
    server = FlakyMedia({item.media: data}, cut_after={item.media: 250_000})
    cache = MediaCache(tmp_path, 10_000_000)
    async with server.serve() as base:
        url = f"{base}/{item.media}"
        with pytest.raises(DownloadError) as cut:
            await download(http, url, item, cache)
        assert not isinstance(cut.value, MediaCorrupt)
        kept = cache.partial(item.media).stat().st_size
        assert 0 < kept < len(data) and not cache.has(item.media)
        await download(http, url, item, cache)
    assert server.ranges == [(item.media, None), (item.media, f"bytes={kept}-")]
    path = cache.path(item.media)
    assert path is not None and path.read_bytes() == data
    assert not cache.partial(item.media).exists()


async def test_bytes_that_do_not_match_the_hash_are_thrown_away(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    data = blob(200_000, 2)
    item = item_for("ad", data)
    server = FlakyMedia({item.media: data}, cut_after={item.media: 50_000}, corrupt={item.media})
    cache = MediaCache(tmp_path, 10_000_000)
    async with server.serve() as base:
        url = f"{base}/{item.media}"
        with pytest.raises(DownloadError):
            await download(http, url, item, cache)  # cut
        with pytest.raises(MediaCorrupt):
            await download(http, url, item, cache)  # resumed, but the last byte is wrong
        assert not cache.has(item.media) and not cache.partial(item.media).exists()
        server.corrupt.clear()
        await download(http, url, item, cache)  # from scratch, now right
    assert server.ranges[-1] == (item.media, None)
    path = cache.path(item.media)
    assert path is not None and hashlib.sha256(path.read_bytes()).hexdigest() == item.media


async def test_a_server_sending_more_than_the_file_is_cut_off(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    data = blob(10_000, 3)
    item = item_for("ad", data)
    server = FlakyMedia({item.media: data + b"\x00" * 5000})
    cache = MediaCache(tmp_path, 10_000_000)
    async with server.serve() as base:
        with pytest.raises(MediaCorrupt):
            await download(http, f"{base}/{item.media}", item, cache)
    assert not cache.has(item.media) and not any(cache.partial_dir.iterdir())


async def test_corrupted_media_are_never_shown_and_the_old_playlist_plays_on(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    old_bytes, good_bytes, bad_bytes = (
        png(4, 4, (0, 0, 9)),
        png(5, 5, (9, 0, 0)),
        png(6, 6, (0, 9, 0)),
    )
    old, good, bad = (
        item_for("old", old_bytes),
        item_for("good", good_bytes),
        item_for("bad", bad_bytes),
    )
    server = FlakyMedia({old.media: old_bytes, good.media: good_bytes, bad.media: bad_bytes},
                        corrupt={bad.media})  # fmt: skip
    screen = Screen()
    rt = runtime(tmp_path, screen)
    async with server.serve() as base:
        first = simple_playlist([old], base, pid="old")
        rt.offer(desired(first))
        assert await rt.sync_once(http)
        second = simple_playlist([good, bad], base, pid="new")
        rt.offer(desired(second, 2))
        with pytest.raises(MediaCorrupt):
            await rt.sync_once(http)
        assert rt.active == first and rt.counters["corrupt"] == 1
        t = T0
        for _ in range(20):
            t = rt.player.step(t)
        assert set(screen.shown) == {"old"}
        assert (
            not rt.cache.has(bad.media)
            and not (tmp_path / "media" / "partial" / bad.media).exists()
        )
        server.corrupt.clear()  # central's file fixed: the next pass gets it right
        assert await rt.sync_once(http)
    assert rt.active == second
    for _ in range(6):
        t = rt.player.step(t)
    assert {"good", "bad"} <= set(screen.shown)
    assert all(p.item in ("old", "good", "bad") for p in screen.plays)


async def test_the_switch_waits_for_every_file_and_survives_a_restart(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    files = {f"ad{n}": blob(120_000 + n, 10 + n) for n in range(3)}
    items = [item_for(name, data, mime="video/webm") for name, data in files.items()]
    server = FlakyMedia({i.media: files[i.id] for i in items}, cut_after={items[2].media: 60_000})
    screen = Screen()
    rt = runtime(tmp_path, screen)
    async with server.serve() as base:
        pl = simple_playlist(items, base)
        rt.offer(desired(pl))
        with pytest.raises(DownloadError):
            await rt.sync_once(http)
        assert rt.active is None and rt.player.step(T0) and screen.shown == []
        assert rt.cache.has(items[0].media) and rt.cache.has(items[1].media)
        assert await rt.sync_once(http)
    assert rt.active == pl
    # Restarted with the uplink down: the saved playlist and its files play at once.
    again = Screen()
    rt2 = runtime(tmp_path, again)
    assert rt2.active == pl
    rt2.player.step(T0)
    assert again.shown == ["ad0"]


async def test_unused_media_are_evicted_to_keep_the_disk_budget(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    files = {f"m{n}": blob(100_000, 20 + n) for n in range(5)}
    items = {name: item_for(name, data) for name, data in files.items()}
    server = FlakyMedia({i.media: files[name] for name, i in items.items()})
    screen = Screen()
    rt = runtime(tmp_path, screen, budget=350_000)
    async with server.serve() as base:
        first = simple_playlist([items["m0"], items["m1"], items["m2"]], base, pid="a")
        rt.offer(desired(first))
        assert await rt.sync_once(http)
        # m0 was used last (played); m1 and m2 are older.
        os.utime(rt.cache.path(items["m1"].media), (T0 - 300, T0 - 300))  # type: ignore[arg-type]
        os.utime(rt.cache.path(items["m2"].media), (T0 - 200, T0 - 200))  # type: ignore[arg-type]
        second = simple_playlist([items["m3"], items["m4"]], base, pid="b")
        rt.offer(desired(second, 2))
        assert await rt.sync_once(http)
        too_big = simple_playlist(list(items.values()), base, pid="c")
        rt.offer(desired(too_big, 3))
        assert not await rt.sync_once(http)
    assert rt.active == second and rt.counters["over_budget"] == 1
    kept = {name for name, i in items.items() if rt.cache.has(i.media)}
    assert kept == {"m0", "m3", "m4"}  # the least recently used of the old ones went
    assert rt.cache.size() <= 350_000


async def test_a_playlist_without_media_address_is_not_switched_to(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    screen = Screen()
    rt = runtime(tmp_path, screen)
    rt.offer(desired(simple_playlist([item_for("x", png(2, 2, (1, 1, 1)))])))
    with pytest.raises(DownloadError, match="media URL"):
        await rt.sync_once(http)
    assert rt.active is None
