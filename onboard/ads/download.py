"""Download one content-addressed file, resuming where a cut connection left it, and verify it.

The partial file keeps every byte received. The next attempt asks for the rest with
`Range: bytes=N-`; a server that ignores the range (200) sends everything again and the
partial starts over. Only when the size is complete is the whole file hashed; a mismatch
deletes the partial (the bytes are wrong, resuming them would keep them wrong) and the file
never enters the cache, so it is never shown.

`fetch_verified` is the generic piece (a sha256, a size, a cache): the ads' media use it
through `download`, and so do the timetable packages (onboard/timetable/).
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from onboard.ads.cache import MediaCache
from onboard.errors import RemoteError
from protocols.ads.playlist import Item

CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(RemoteError):
    """The download stopped (network, server); what arrived is kept for the next attempt."""


class MediaCorrupt(DownloadError):
    """The bytes do not hash to the file's sha256 (or are too many): they were thrown away."""


async def download(session: aiohttp.ClientSession, url: str, item: Item, cache: MediaCache) -> None:
    """Fetch `item`'s media into the cache; returns at once if it is there already."""
    await fetch_verified(
        session, url, cache, sha256=item.media, size=item.size, mime=item.mime, label=item.id
    )


async def fetch_verified(
    session: aiohttp.ClientSession,
    url: str,
    cache: MediaCache,
    *,
    sha256: str,
    size: int,
    mime: str,
    label: str,
) -> Path:
    """Fetch the file of that hash and size into `cache` (resuming a partial); its path.

    Raises DownloadError when the transfer stopped (the bytes so far are kept) and
    MediaCorrupt when the bytes are not those of the hash (they are thrown away)."""
    have_path = cache.path(sha256)
    if have_path is not None:
        return have_path
    partial = cache.partial(sha256)
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        partial.unlink()
        have = 0
    if have < size:
        await _fetch(session, url, cache, sha256, size=size, partial_size=have, label=label)
    try:
        return cache.adopt(sha256, mime)
    except ValueError as exc:
        raise MediaCorrupt(f"{label}: {exc}") from exc


async def _fetch(
    session: aiohttp.ClientSession,
    url: str,
    cache: MediaCache,
    sha256: str,
    *,
    size: int,
    partial_size: int,
    label: str,
) -> None:
    partial = cache.partial(sha256)
    headers = {"Range": f"bytes={partial_size}-"} if partial_size else {}
    try:
        async with session.get(url, headers=headers) as resp:
            if resp.status == 416:  # nothing after what we have: check it as it is
                return
            if resp.status == 206:
                start = _range_start(resp.headers.get("Content-Range", ""))
                if start != partial_size:
                    raise DownloadError(f"{label}: server resumed at {start}, not {partial_size}")
                mode = "ab"
            elif resp.status == 200:
                mode, partial_size = "wb", 0  # no range support: start over
            else:
                raise DownloadError(f"{label}: HTTP {resp.status} from {url}")
            received = partial_size
            with partial.open(mode) as f:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    received += len(chunk)
                    if received > size:
                        f.close()
                        partial.unlink(missing_ok=True)
                        raise MediaCorrupt(f"{label}: more than its {size} bytes")
                    f.write(chunk)
            if received < size:
                raise DownloadError(f"{label}: connection ended at {received} of {size}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DownloadError(f"{label}: {type(exc).__name__}: {exc}") from exc


def _range_start(header: str) -> int | None:
    m = _CONTENT_RANGE.match(header.strip())
    return int(m.group(1)) if m else None
