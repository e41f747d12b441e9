"""The passenger display server: local pages for the screens in the bus, updated live.

The kiosk browsers in the bus load `/display/landscape` (16:9) or `/display/strip` (a narrow
strip) from the agent and listen on `/display/events` (Server-Sent Events) for the current
`DisplayState`; nothing on the pages comes from outside the bus, so they keep working while
the uplink is down. The agent feeds the inputs (`update`, `apply_desired`, `apply_journey`);
the state is recomputed on every change and once per tick, so announcements expire on the
bus's clock. Other parts serve on the same origin through `add_routes` (the ad media).

Each page connection waits on its own flag and always sends the latest state: a slow or
frozen screen skips intermediate states instead of queueing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

from aiohttp import web

from onboard.display.model import (
    AdSlot,
    DisplayState,
    JourneyView,
    assignment_labels,
    desired_messages,
    display_state,
    from_journey,
)
from onboard.web.live import LiveFeed
from protocols.schemas import DesiredState, PassengerMessage

if TYPE_CHECKING:
    from onboard.journey.states import JourneyState

log = logging.getLogger("busfleet.onboard.display")

STATIC = Path(__file__).resolve().parent / "static"
# Everything from the agent itself: no CDN, no web font, no remote ad can sneak in.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; frame-src 'self'; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
PAGES = {"landscape": "landscape.html", "strip": "strip.html"}


@dataclass(frozen=True, slots=True)
class DisplayInputs:
    """What the agent knows; `display_state` turns it into what the pages show."""

    journey: JourneyView | None = None
    messages: tuple[PassengerMessage, ...] = ()
    fallback_line: str = ""
    fallback_destination: str = ""
    stop_requested: bool = False
    online: bool = False
    diversion: str | None = None
    ad: AdSlot | None = None


class Changes(TypedDict, total=False):
    journey: JourneyView | None
    messages: tuple[PassengerMessage, ...]
    fallback_line: str
    fallback_destination: str
    stop_requested: bool
    online: bool
    diversion: str | None
    ad: AdSlot | None


class Display:
    """The display's state and its HTTP server (an async context manager, or `run()`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8090,
        *,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
        heartbeat_s: float = 15.0,
    ) -> None:
        self.host = host
        self.requested_port = port  # 0: any free port (tests); see `port` for the bound one
        self.port: int | None = None
        self.clock = clock
        self.tick_s = tick_s
        self.inputs = DisplayInputs()
        self.feed: LiveFeed[DisplayState] = LiveFeed(DisplayState(), heartbeat_s=heartbeat_s)
        self._runner: web.AppRunner | None = None
        self._extra_routes: list[web.AbstractRouteDef] = []

    # -- inputs ---------------------------------------------------------------------------
    def update(self, **changes: Unpack[Changes]) -> None:
        """Change some inputs (keywords as DisplayInputs) and push the result if it differs."""
        self.inputs = dataclasses.replace(self.inputs, **changes)
        self.refresh()

    def apply_desired(self, desired: DesiredState | None) -> None:
        """Take the announcements and the assignment from the applied desired state."""
        line, destination = assignment_labels(desired.assignment if desired else None)
        self.update(
            messages=desired_messages(desired),
            fallback_line=line,
            fallback_destination=destination,
        )

    def apply_journey(self, state: JourneyState | None) -> None:
        """Take line, destination, next stops, delay (and the stop request, when the tracker
        knows it) from the journey tracker; None: no tracker or no trip (the assignment's
        labels are shown)."""
        if state is None:
            self.update(journey=None)
        elif state.stop_requested is None:
            self.update(journey=from_journey(state))
        else:
            self.update(journey=from_journey(state), stop_requested=state.stop_requested)

    def refresh(self) -> bool:
        """Recompute the state for now; True if it changed (and was sent to the pages)."""
        i = self.inputs
        state = display_state(
            i.journey,
            i.messages,
            self.clock(),
            fallback_line=i.fallback_line,
            fallback_destination=i.fallback_destination,
            stop_requested=i.stop_requested,
            online=i.online,
            diversion=i.diversion,
            ad=i.ad,
        )
        return self.feed.publish(state)

    @property
    def state(self) -> DisplayState:
        return self.feed.state

    @property
    def version(self) -> int:
        return self.feed.version

    @property
    def clients(self) -> int:
        """Pages listening now."""
        return self.feed.clients

    # -- serving --------------------------------------------------------------------------
    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Serve more on the display's origin (the ad media), so the pages' policy of loading
        only from the agent itself holds. Takes effect at the next `start()`."""
        self._extra_routes.extend(routes)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/display", self._index)
        app.router.add_get("/display/{page:landscape|strip}", self._page)
        app.router.add_get("/display/events", self._events)
        app.router.add_get("/display/state.json", self._state_json)
        app.router.add_get("/favicon.ico", self._no_icon)
        app.router.add_static("/display/static", STATIC)
        app.router.add_routes(self._extra_routes)
        app.on_response_prepare.append(_security_headers)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def start(self) -> None:
        """Bind and serve in the background; OSError if the address is taken."""
        self.feed.open()
        # Pages hold event streams open: do not wait the default 60 s for them on the way out.
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])  # the bound port, also when 0 was asked for
        log.info("passenger display on http://%s:%s/display/landscape", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Display:
        await self.start()
        self._ticker_task = asyncio.create_task(self._ticker(), name="display-tick")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._ticker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker_task
        await self.stop()

    async def run(self) -> None:
        """Serve until cancelled. A taken port is retried with backoff instead of stopping the
        agent: the bus must keep reporting even if its screens are dark."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ticker(), name="display-tick")
            tg.create_task(self._serve(), name="display-http")

    async def _serve(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.start()
                break
            except OSError as exc:
                level = logging.WARNING if delay == 1.0 else logging.DEBUG
                log.log(
                    level, "display cannot listen on %s:%s: %s", self.host, self.requested_port, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            await self.stop()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.refresh()

    # -- handlers -------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/display/landscape")

    async def _no_icon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)  # browsers ask for one; an error would only fill logs

    async def _page(self, request: web.Request) -> web.StreamResponse:
        page = PAGES[request.match_info["page"]]
        return web.FileResponse(STATIC / page, headers={"Cache-Control": "no-cache"})

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


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path in ("/display/landscape", "/display/strip"):
        response.headers["Content-Security-Policy"] = CSP
