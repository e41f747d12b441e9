"""A live state for the bus's local pages: versioned, pushed to browsers as Server-Sent Events.

The passenger display and the driver terminal both keep one state, bump a version when it
changes and stream it to every open page (with a heartbeat, so a page that went away is
noticed). This is that part, once.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

import msgspec
from aiohttp import web

S = TypeVar("S")


class LiveFeed(Generic[S]):
    def __init__(self, initial: S, *, heartbeat_s: float = 15.0) -> None:
        self.state = initial
        self.version = 0
        self.heartbeat_s = heartbeat_s
        self.payload = self._encode()
        self._listeners: set[asyncio.Event] = set()
        self._closing = False

    def _encode(self) -> bytes:
        return msgspec.json.encode({"version": self.version, "state": self.state})

    def publish(self, state: S) -> bool:
        """Make `state` current; True (and the pages are told) if it differs from the last."""
        if state == self.state:
            return False
        self.state = state
        self.version += 1
        self.payload = self._encode()
        for wake in self._listeners:
            wake.set()
        return True

    @property
    def clients(self) -> int:
        """Pages listening now."""
        return len(self._listeners)

    def open(self) -> None:
        self._closing = False

    def close(self) -> None:
        """End every stream (the server is shutting down)."""
        self._closing = True
        for wake in self._listeners:
            wake.set()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """The SSE response: the current state at once, then every change, pings meanwhile."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        wake = asyncio.Event()
        self._listeners.add(wake)
        sent = -1
        try:
            await response.write(b"retry: 2000\n\n")  # the browser reconnects after 2 s
            while not self._closing:
                wake.clear()
                if sent != self.version:
                    sent = self.version
                    await response.write(b"data: " + self.payload + b"\n\n")
                try:
                    async with asyncio.timeout(self.heartbeat_s):
                        await wake.wait()
                except TimeoutError:
                    # A comment line: keeps idle connections open through anything in between
                    # and lets the server notice a page that went away.
                    await response.write(b": ping\n\n")
        except ConnectionError:
            pass  # the page went away (aiohttp raises ClientConnectionResetError)
        finally:
            self._listeners.discard(wake)
        return response
