"""Helpers for the ads tests: real image bytes, playlists, a media server that misbehaves."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from busfleet.broker.launch import free_port
from protocols.ads.playlist import Item, Playlist, Schedule


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour (browsers decode it), written by hand: no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def item_for(item_id: str, data: bytes, seconds: float = 10.0, mime: str = "image/png") -> Item:
    kind = "video" if mime.startswith("video/") else "html" if mime == "text/html" else "image"
    return Item(
        id=item_id,
        media=hashlib.sha256(data).hexdigest(),
        kind=kind,
        mime=mime,
        size=len(data),
        duration_s=seconds,
    )


def simple_playlist(items: list[Item], media_url: str = "", *, pid: str = "p") -> Playlist:
    """All items in rotation, all day, every day."""
    return Playlist(
        id=pid,
        media_url=media_url,
        items=items,
        schedules=[Schedule(id="all", items=[i.id for i in items])],
    )


@dataclass
class FlakyMedia:
    """A media server on loopback that can cut a response after N bytes or flip bytes.

    `files`: sha256 -> bytes. `cut_after`: sha256 -> bytes of the body sent before the
    connection is dropped (once). `corrupt`: sha256s served with one byte changed.
    Every request's Range header is logged in `ranges`.
    """

    files: dict[str, bytes]
    cut_after: dict[str, int] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    ranges: list[tuple[str, str | None]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha"]
        data = self.files.get(sha)
        if data is None:
            raise web.HTTPNotFound()
        if sha in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        header = request.headers.get("Range")
        self.ranges.append((sha, header))
        start = int(header.removeprefix("bytes=").rstrip("-")) if header else 0
        body = data[start:]
        response = web.StreamResponse(status=206 if header else 200)
        response.content_length = len(body)
        response.content_type = "application/octet-stream"
        if header:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await response.prepare(request)
        cut = self.cut_after.pop(sha, None)
        if cut is not None:
            await response.write(body[:cut])
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()  # the tunnel: the connection is gone mid-body
            return response
        await response.write(body)
        await response.write_eof()
        return response

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the media base URL."""
        app = web.Application()
        app.router.add_get("/media/{sha}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            yield f"http://127.0.0.1:{port}/media"
        finally:
            await runner.cleanup()
