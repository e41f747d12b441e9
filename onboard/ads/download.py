"""Download one media file, resuming where a cut connection left it, and verify its hash.

The partial file keeps every byte received. The next attempt asks for the rest with
`Range: bytes=N-`; a server that ignores the range (200) sends everything again and the
partial starts over. Only when the size is complete is the whole file hashed; a mismatch
deletes the partial (the bytes are wrong, resuming them would keep them wrong) and the file
never enters the cache, so it is never shown.
"""

from __future__ import annotations

import re

import aiohttp

from onboard.ads.cache import MediaCache
from onboard.errors import RemoteError
from protocols.ads.playlist import Item

CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(RemoteError):
    """The download stopped (network, server); what arrived is kept for the next attempt."""


class MediaCorrupt(DownloadError):
    """The bytes do not hash to the media's sha256 (or are too many): they were thrown away."""


async def download(session: aiohttp.ClientSession, url: str, item: Item, cache: MediaCache) -> None:
    """Fetch `item`'s media into the cache; returns at once if it is there already."""
    if cache.has(item.media):
        return
    partial = cache.partial(item.media)
    have = partial.stat().st_size if partial.exists() else 0
    if have > item.size:
        partial.unlink()
        have = 0
    if have < item.size:
        await _fetch(session, url, item, partial_size=have, cache=cache)
    try:
        cache.adopt(item.media, item.mime)
    except ValueError as exc:
        raise MediaCorrupt(f"{item.id}: {exc}") from exc


async def _fetch(
    session: aiohttp.ClientSession, url: str, item: Item, *, partial_size: int, cache: MediaCache
) -> None:
    partial = cache.partial(item.media)
    headers = {"Range": f"bytes={partial_size}-"} if partial_size else {}
    try:
        async with session.get(url, headers=headers) as resp:
            if resp.status == 416:  # nothing after what we have: check it as it is
                return
            if resp.status == 206:
                start = _range_start(resp.headers.get("Content-Range", ""))
                if start != partial_size:
                    raise DownloadError(f"{item.id}: server resumed at {start}, not {partial_size}")
                mode = "ab"
            elif resp.status == 200:
                mode, partial_size = "wb", 0  # no range support: start over
            else:
                raise DownloadError(f"{item.id}: HTTP {resp.status} from {url}")
            received = partial_size
            with partial.open(mode) as f:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    received += len(chunk)
                    if received > item.size:
                        f.close()
                        partial.unlink(missing_ok=True)
                        raise MediaCorrupt(f"{item.id}: more than its {item.size} bytes")
                    f.write(chunk)
            if received < item.size:
                raise DownloadError(f"{item.id}: connection ended at {received} of {item.size}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DownloadError(f"{item.id}: {type(exc).__name__}: {exc}") from exc


def _range_start(header: str) -> int | None:
    m = _CONTENT_RANGE.match(header.strip())
    return int(m.group(1)) if m else None
