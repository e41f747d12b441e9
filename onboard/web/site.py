"""One local web site of the agent: bind with backoff, a ticker, the live feed, safe headers.

The passenger display (onboard/display/server.py) and the driver terminal
(onboard/driver/server.py) are both a page, its static files and a live state streamed to
the browsers of the bus. What they share is here, once:

- `start()` binds and serves in the background (OSError if the address is taken); `run()`
  binds with the onboard backoff (onboard/backoff.py) until it can, then serves until
  cancelled: a taken port never stops the agent, the bus must keep reporting even if its
  screens are dark;
- a ticker calls `tick()` every `tick_s`, since the clock and the uplink change what is shown
  without anyone telling the site;
- the live feed (onboard/web/live.py): `/<prefix>/events` (Server-Sent Events) and
  `/<prefix>/state.json`, closed on shutdown so that open streams end at once;
- security headers on every response, and the page's Content-Security-Policy on its pages;
- deadlines for a request's header and body, an idle deadline, and a limit of connections per
  client address (httpguard): screens and phones the bus does not control.

A site says its routes (`own_routes`), its state (`refresh`) and its policy (class attributes).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import ClassVar, Generic, Self, TypeVar

from aiohttp import web

from httpguard import ConnectionGuard, GuardedSite, ServerLimits
from onboard.backoff import Backoff
from onboard.web.live import LiveFeed

__all__ = ["BIND_RETRY_MAX_S", "LocalSite"]

log = logging.getLogger("busfleet.onboard.web")

S = TypeVar("S")

BIND_RETRY_MAX_S = 60.0
# Pages hold event streams open: do not wait aiohttp's default 60 s for them on the way out.
SHUTDOWN_TIMEOUT_S = 1.0


class LocalSite(abc.ABC, Generic[S]):
    """A local page and its live state (an async context manager, or `run()`)."""

    name: ClassVar[str]  # for the log: "passenger display", "driver terminal"
    prefix: ClassVar[str]  # "/display": the feed is served under it
    csp: ClassVar[str]  # the Content-Security-Policy of the site's pages
    csp_paths: ClassVar[frozenset[str]]  # the pages it applies to
    extra_headers: ClassVar[Mapping[str, str]] = {}  # more headers on every response

    def __init__(
        self,
        host: str,
        port: int,
        feed: LiveFeed[S],
        *,
        tick_s: float = 1.0,
        limits: ServerLimits | None = None,
    ) -> None:
        self.host = host
        self.guard = ConnectionGuard(limits or ServerLimits(), self.name)
        self.requested_port = port  # 0: any free port (tests); see `port` for the bound one
        self.port: int | None = None
        self.feed = feed
        self.tick_s = tick_s
        self._runner: web.AppRunner | None = None

    # -- what a site says ------------------------------------------------------------------
    @abc.abstractmethod
    def own_routes(self, app: web.Application) -> None:
        """The site's own routes (its page, static files, POSTs)."""

    @abc.abstractmethod
    def refresh(self) -> bool:
        """Recompute the state for now; True if it changed (and was sent to the pages)."""

    def application(self) -> web.Application:
        """A fresh aiohttp application (a site with limits or middlewares overrides this)."""
        return web.Application()

    def tick(self) -> None:
        """Once per `tick_s`: by default, recompute the state."""
        self.refresh()

    # -- the live state --------------------------------------------------------------------
    @property
    def state(self) -> S:
        return self.feed.state

    @property
    def version(self) -> int:
        return self.feed.version

    @property
    def clients(self) -> int:
        """Pages listening now."""
        return self.feed.clients

    # -- serving ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The site's application: its routes, the feed's, the headers, the shutdown."""
        app = self.application()
        self.own_routes(app)
        app.router.add_get(f"{self.prefix}/events", self._events)
        app.router.add_get(f"{self.prefix}/state.json", self._state_json)
        app.router.add_get("/favicon.ico", self._no_icon)
        app.on_response_prepare.append(self._security_headers)
        app.middlewares.append(self.guard.read_body_within)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def start(self) -> None:
        """Bind and serve in the background; OSError if the address is taken."""
        self.feed.open()
        runner = web.AppRunner(
            self.app(),
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            **self.guard.runner_options(),
        )
        await runner.setup()
        site = GuardedSite(runner, self.host, self.requested_port, self.guard)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])  # the bound port, also when 0 was asked for
        log.info("%s on http://%s:%s%s", self.name, self.host, self.port, self.prefix)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        self._ticker_task = asyncio.create_task(self._ticker(), name=f"{self.prefix[1:]}-tick")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._ticker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker_task
        await self.stop()

    async def run(self) -> None:
        """Serve until cancelled; a taken port is retried with backoff (the agent runs on)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ticker(), name=f"{self.prefix[1:]}-tick")
            tg.create_task(self._serve(), name=f"{self.prefix[1:]}-http")

    async def _serve(self) -> None:
        retries = Backoff(BIND_RETRY_MAX_S)
        async for attempt in retries:
            try:
                await self.start()
                break
            except OSError as exc:
                level = logging.WARNING if attempt == 0 else logging.DEBUG
                log.log(level, "%s cannot listen on %s:%s: %s", self.name, self.host,
                        self.requested_port, exc)  # fmt: skip
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            await self.stop()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.tick()

    # -- shared handlers -------------------------------------------------------------------
    async def _no_icon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)  # browsers ask for one; an error would only fill logs

    async def _state_json(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.feed.payload,
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def _events(self, request: web.Request) -> web.StreamResponse:
        return await self.feed.stream(request)

    async def _on_shutdown(self, app: web.Application) -> None:
        self.feed.close()

    async def _security_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """The pages load nothing but the agent's own files."""
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        for name, value in self.extra_headers.items():
            response.headers.setdefault(name, value)
        if request.path in self.csp_paths:
            response.headers["Content-Security-Policy"] = self.csp
