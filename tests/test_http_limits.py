"""Slow and greedy clients: every HTTP server of the agent and of central closes a connection
whose header never ends, refuses connections from one address beyond its limit while serving
others, and drops a request body that does not arrive.

Each server runs for real on loopback with short deadlines; a second client address is
127.0.0.2 (all of 127/8 is loopback on Linux). Nothing here asserts a duration: a connection
must be closed before a generous deadline, that is all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import httpguard
from central.http.server import create_app, serving
from central.store.db import CentralStore
from onboard.display.server import Display
from onboard.driver.server import DriverTerminal
from onboard.link.outbox import Outbox
from onboard.portal import NullFirewall, Settings
from onboard.portal.service import PortalService
from onboard.portal.sessions import Limits

DEADLINE_S = 30.0  # generous: "closed eventually", never "closed quickly"
HALF_HEADER = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"


@dataclass
class Served:
    port: int
    refused: Callable[[], int]
    open_from: Callable[[str], int]
    slow_bodies: Callable[[], int]
    post: bytes  # a POST's request line and headers (without Content-Length), as the site takes


def _limits(kind: str, **values: Any) -> Any:
    return httpguard.ServerLimits(**values)


@contextlib.asynccontextmanager
async def server(kind: str, tmp_path: Path, **limits: Any) -> AsyncIterator[Served]:
    chosen = _limits(kind, **limits)
    if kind == "central":
        store = CentralStore(tmp_path / "central.sqlite")
        guard = httpguard.ConnectionGuard(chosen)
        try:
            async with serving(create_app(store), "127.0.0.1", 0, guard) as (_host, port):
                post = b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                yield Served(port, lambda: guard.refused, lambda a: guard.open.get(a, 0),
                             lambda: guard.slow_bodies, post)  # fmt: skip
        finally:
            store.close()
        return
    if kind == "portal":
        settings = Settings(public_url="http://127.0.0.1/", limits=Limits(max_clients=5))
        portal = PortalService(
            settings,
            NullFirewall(),
            tmp_path / "agent.sqlite",
            listen_host="127.0.0.1",
            listen_port=0,
            limits=chosen,
        )
        task = asyncio.create_task(portal.run())
        try:
            await asyncio.wait_for(portal.ready.wait(), DEADLINE_S)
            g = portal.guard
            post = b"POST /feedback HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            post += b"Content-Type: application/x-www-form-urlencoded\r\n"
            yield Served(portal.addresses[0][1], lambda: g.refused, lambda a: g.open.get(a, 0),
                         lambda: g.slow_bodies, post)  # fmt: skip
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return
    outbox = Outbox(tmp_path / "agent.sqlite")
    site: Display | DriverTerminal
    if kind == "driver":
        site = DriverTerminal(outbox, lambda *a, **k: 0, port=0, limits=chosen)
    else:
        site = Display("127.0.0.1", 0, limits=chosen)
    try:
        async with site:
            assert site.port is not None
            origin = f"Origin: http://127.0.0.1:{site.port}\r\n".encode()
            post = b"POST /driver/canned HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % site.port
            post += origin + b"Content-Type: application/json\r\n"
            g = site.guard
            yield Served(site.port, lambda: g.refused, lambda a: g.open.get(a, 0),
                         lambda: g.slow_bodies, post)  # fmt: skip
    finally:
        outbox.close()


KINDS = ["central", "display", "driver", "portal"]


async def connect(port: int, source: str = "127.0.0.1") -> tuple[Any, Any]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(int(DEADLINE_S / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def get(port: int, source: str) -> bytes:
    reader, writer = await connect(port, source)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    try:
        return bytes(await asyncio.wait_for(reader.read(), DEADLINE_S))
    finally:
        writer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_connection_whose_header_never_ends_is_closed_by_the_server(
    kind: str, tmp_path: Path
) -> None:
    async with server(kind, tmp_path, header_timeout_s=0.5) as served:
        reader, writer = await connect(served.port)
        writer.write(HALF_HEADER)
        try:
            # EOF (b"") from the server's side: it closed the connection and answered nothing.
            assert await asyncio.wait_for(reader.read(), DEADLINE_S) == b""
        finally:
            writer.close()
        assert (await get(served.port, "127.0.0.1")).startswith(b"HTTP/1.1 ")  # still serving


@pytest.mark.parametrize("kind", KINDS)
async def test_connections_beyond_the_limit_from_one_address_are_refused_others_served(
    kind: str, tmp_path: Path
) -> None:
    async with server(kind, tmp_path, header_timeout_s=120.0, per_address=3) as served:
        held = [await connect(served.port) for _ in range(3)]
        for _reader, writer in held:
            writer.write(HALF_HEADER)
        await until(lambda: served.open_from("127.0.0.1") == 3, "three connections admitted")
        reader, writer = await connect(served.port)
        writer.write(HALF_HEADER)
        refused = await asyncio.wait_for(reader.read(), DEADLINE_S)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 503 "), refused
        assert served.refused() == 1
        # Another client address is served meanwhile.
        other = await get(served.port, "127.0.0.2")
        assert other.startswith(b"HTTP/1.1 ") and not other.startswith(b"HTTP/1.1 503"), other
        # One of the three goes away: the address may open one again.
        held[0][1].close()
        await until(lambda: served.open_from("127.0.0.1") == 2, "the closed one released")
        again = await get(served.port, "127.0.0.1")
        assert again.startswith(b"HTTP/1.1 ") and not again.startswith(b"HTTP/1.1 503"), again
        for _reader, writer in held[1:]:
            writer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_request_body_that_does_not_arrive_is_answered_408_and_closed(
    kind: str, tmp_path: Path
) -> None:
    async with server(kind, tmp_path, body_timeout_s=0.5) as served:
        reader, writer = await connect(served.port)
        writer.write(served.post + b"Content-Length: 100\r\n\r\n" + b"{" * 10)
        try:
            reply = await asyncio.wait_for(reader.read(), DEADLINE_S)
        finally:
            writer.close()
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert served.slow_bodies() == 1
