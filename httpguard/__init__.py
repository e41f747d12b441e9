"""Slow and greedy HTTP clients: deadlines and connections per address, for aiohttp servers.

The agent's display, driver terminal and portal are reached by phones and screens the bus does
not control; central's GTFS-Realtime feeds, media downloads and /healthz by whoever reaches
its port. One client opening a thousand sockets, or sending a header a byte a minute, must not
starve the process of file descriptors. What aiohttp (3.14) gives and what is added here:

- **header and idle deadline**: aiohttp closes a connection that has not delivered a complete
  request header within `keepalive_timeout` of connecting or of its last response (its
  RequestHandler arms that timer in `connection_made` and fires it only while waiting for a
  request; a handler at work, such as an event stream, is never cut). Its default is an hour:
  `runner_options()` sets it to `header_timeout_s`.
- **body deadline**: aiohttp has none; the `read_body_within` middleware reads a request body
  under `body_timeout_s` (408 and the connection closed after it).
- **connections per client address**: aiohttp has no such limit. `GuardedSite` listens like
  aiohttp's TCPSite, with the server's protocol factory wrapped: a connection beyond
  `per_address` from one address gets a 503 and is closed before aiohttp sees it, and counted.

A package of its own beside onboard/ and central/: both run aiohttp servers, the one-way rule
lets them share nothing but protocols/, and protocols/ does no I/O. It imports none of ours.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["ConnectionGuard", "GuardedSite", "ServerLimits"]

log = logging.getLogger("busfleet.http")

REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 29\r\n\r\ntoo many connections from you"
)

# aiohttp reads an unwanted body for up to 10 s after its answer: a slow body would be held
# that long once more.
LINGER_S = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    header_timeout_s: float = 15.0  # a whole request header within this of connecting/idling
    body_timeout_s: float = 20.0  # a whole request body within this of its header
    per_address: int = 16  # connections open at once from one client address


class ConnectionGuard:
    """The connections open per client address, and what was refused (one per server)."""

    def __init__(self, limits: ServerLimits, name: str = "http") -> None:
        self.limits = limits
        self.name = name  # the server, in log lines
        self.open: dict[str, int] = {}
        self.refused = 0  # connections over the per-address limit
        self.slow_bodies = 0  # request bodies not complete within body_timeout_s

    def runner_options(self) -> dict[str, Any]:
        """Keywords for web.AppRunner: aiohttp's own header and idle deadline, and how long it
        keeps reading a body nobody wants after answering (so the client sees the answer)."""
        return {
            "keepalive_timeout": self.limits.header_timeout_s,
            "lingering_time": min(LINGER_S, self.limits.body_timeout_s),
        }

    def admit(self, address: str) -> bool:
        count = self.open.get(address, 0)
        if count >= self.limits.per_address:
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.warning("%s: refused a connection from %s: %d open already (%d refused so far)",
                            self.name, address, count, self.refused)  # fmt: skip
            return False
        self.open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self.open.get(address, 0) - 1
        if count > 0:
            self.open[address] = count
        else:
            self.open.pop(address, None)

    def protocol_factory(
        self, inner: Callable[[], asyncio.BaseProtocol]
    ) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner)

    @web.middleware
    async def read_body_within(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Read a request's body under the body deadline (handlers then get it from memory)."""
        if request.body_exists:
            try:
                async with asyncio.timeout(self.limits.body_timeout_s):
                    await request.read()
            except TimeoutError:
                self.slow_bodies += 1
                response = web.Response(status=408, text="request body too slow")
                response.force_close()
                return response
        return await handler(request)


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, created only if the address is under its limit."""

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.BaseProtocol]):
        self.guard = guard
        self.factory = factory
        self.inner: asyncio.Protocol | None = None
        self.address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.guard.admit(self.address):
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REFUSAL)
            transport.close()
            return
        inner = self.factory()
        assert isinstance(inner, asyncio.Protocol)  # aiohttp's RequestHandler is one
        self.inner = inner
        inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.guard.release(self.address)
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class GuardedSite(web.BaseSite):
    """aiohttp's TCPSite with the connection guard in front of every connection."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # the runner is set up before sites start
        handshake = self._guard.limits.header_timeout_s if self._ssl_context else None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=handshake,
        )
