"""The passenger display server: local pages for the screens in the bus, updated live.

The kiosk browsers in the bus load `/display/landscape` (16:9) or `/display/strip` (a narrow
strip) from the agent and listen on `/display/events` (Server-Sent Events) for the current
`DisplayState`; nothing on the pages comes from outside the bus, so they keep working while
the uplink is down. The agent feeds the inputs (`update`, `apply_desired`, `apply_journey`);
the state is recomputed on every change and once per tick, so announcements expire on the
bus's clock. The pages speak the state's `languages` (agent.toml's `display.language`, which
central may set live: `set_language`) unless the kiosk URL says `?lang=`. Other parts serve on
the same origin through `add_routes` (the ad media).

Each page connection waits on its own flag and always sends the latest state: a slow or
frozen screen skips intermediate states instead of queueing them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

from aiohttp import web

from httpguard import ServerLimits
from onboard.config import DisplaySection, display_languages
from onboard.display.model import (
    AdSlot,
    DisplayState,
    JourneyView,
    LiveBanner,
    assignment_labels,
    clip,
    desired_messages,
    display_state,
    from_journey,
    live_until,
)
from onboard.web.live import LiveFeed
from onboard.web.site import LocalSite
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
    live: LiveBanner | None = None
    languages: tuple[str, ...] = ("de",)  # `display.language`, parsed
    cycle_s: float = 8.0


class Changes(TypedDict, total=False):
    journey: JourneyView | None
    messages: tuple[PassengerMessage, ...]
    fallback_line: str
    fallback_destination: str
    stop_requested: bool
    online: bool
    diversion: str | None
    ad: AdSlot | None
    live: LiveBanner | None
    languages: tuple[str, ...]
    cycle_s: float


class Display(LocalSite[DisplayState]):
    """The display's state and its HTTP server (an async context manager, or `run()`)."""

    name = "passenger display"
    prefix = "/display"
    csp = CSP
    csp_paths = frozenset({"/display/landscape", "/display/strip"})

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8090,
        *,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
        heartbeat_s: float = 15.0,
        limits: ServerLimits | None = None,
        language: str = "de",
        cycle_s: float = 8.0,
    ) -> None:
        feed: LiveFeed[DisplayState] = LiveFeed(DisplayState(), heartbeat_s=heartbeat_s)
        super().__init__(host, port, feed, tick_s=tick_s, limits=limits)
        self.clock = clock
        self.inputs = DisplayInputs(languages=display_languages(language), cycle_s=cycle_s)
        self._extra_routes: list[web.AbstractRouteDef] = []

    @classmethod
    def from_config(cls, section: DisplaySection) -> Display:
        """The display agent.toml's [display] describes (its languages checked already)."""
        return cls(section.host, section.port, language=section.language, cycle_s=section.cycle_s)

    def set_language(self, language: str, cycle_s: float) -> None:
        """Show the pages in `language` ("de", "en", "de,en") from now on, at once: a page
        without ?lang= takes it from the next state it gets (remote configuration)."""
        self.update(languages=display_languages(language), cycle_s=cycle_s)

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

    def show_live(self, announcement: str, text_de: str, text_en: str = "") -> LiveBanner:
        """Show a live announcement from now (the moment it is spoken) until `live_until`;
        a newer one replaces it. The texts are clipped as announcements are."""
        de, en = clip(text_de), clip(text_en)
        banner = LiveBanner(announcement, de or en, en, live_until(self.clock(), de, en))
        self.update(live=banner)
        return banner

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
            live=i.live,
            languages=i.languages,
            cycle_s=i.cycle_s,
        )
        return self.feed.publish(state)

    # -- serving --------------------------------------------------------------------------
    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Serve more on the display's origin (the ad media), so the pages' policy of loading
        only from the agent itself holds. Takes effect at the next `start()`."""
        self._extra_routes.extend(routes)

    def own_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/display", self._index)
        app.router.add_get("/display/{page:landscape|strip}", self._page)
        app.router.add_static("/display/static", STATIC)
        app.router.add_routes(self._extra_routes)

    # -- handlers -------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/display/landscape")

    async def _page(self, request: web.Request) -> web.StreamResponse:
        page = PAGES[request.match_info["page"]]
        return web.FileResponse(STATIC / page, headers={"Cache-Control": "no-cache"})
