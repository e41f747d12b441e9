"""One local site class for the display and the driver terminal: bind with backoff, headers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from onboard.display.server import Display
from onboard.driver.server import DriverTerminal
from onboard.link.outbox import Outbox
from protocols.schemas import Scalar


def no_record(
    kind: str, data: dict[str, Scalar], *, severity: int = 0, t: float | None = None
) -> int:
    return 0


async def test_a_taken_port_is_retried_until_it_is_free_and_then_served() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    display = Display(port=port)
    task = asyncio.create_task(display.run())
    try:
        await asyncio.sleep(0.3)
        assert display.port is None  # still trying: the agent runs on meanwhile
        holder.close()
        async with asyncio.timeout(15):
            # The bound port is a plain attribute: nothing to wait on, so poll (ASYNC110).
            while display.port is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert display.port == port
    finally:
        holder.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_both_sites_send_the_shared_headers_and_their_own_page_policy(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "agent.sqlite")
    driver = DriverTerminal(outbox, no_record, port=0)
    async with TestClient(TestServer(driver.app())) as client:
        page = await client.get("/driver")
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        state = await client.get("/driver/state.json")
        assert state.status == 200 and "Content-Security-Policy" not in state.headers
        assert (await client.get("/favicon.ico")).status == 204
    async with TestClient(TestServer(Display(port=0).app())) as client:
        page = await client.get("/display/strip")
        assert "media-src 'self'" in page.headers["Content-Security-Policy"]
        assert "X-Frame-Options" not in page.headers  # the driver's policy, not the display's
        assert (await client.get("/display/state.json")).status == 200
    outbox.close()
