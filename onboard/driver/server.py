"""The driver's terminal: a page for the touch screen in the cab, served by the agent.

The kiosk browser loads `/driver` and listens on `/driver/events` (Server-Sent Events) for the
current `DriverState`; it posts the driver's actions back: a canned message to dispatch
(`/driver/canned`), the silent emergency alarm (`/driver/emergency`) and the acknowledgement
of a dispatch message (`/driver/ack`). Everything works with the uplink down: each action is
an outbox record at once (durable, sequence-numbered), listed as pending until central's
receipt marks it stored.

The emergency alarm is an event of severity 4 (emergency), so the outbox files it as an alarm:
sent before every other kind, never dropped by the disk budget, and after an outage it is the
first thing the bus sends. Writing it wakes the link, so while online it goes in the link's
next publish, not after the telemetry batching delay. The page shows nothing of it beyond a
small confirmation: whoever threatens the driver must not see that help was called.

Messages from dispatch arrive as the command `driver_message` (central/driver.py): the
command's ack ("ok") means delivered to the bus; the driver's acknowledgement is a separate
`driver_ack` event {id} whose time is when the driver tapped it. Commands rather than the
desired state because each message is a one-off with an expiry that central tracks as sent /
delivered / expired, not a state to converge to; the bus keeps it in SQLite until acknowledged.

POSTs must be same-origin and JSON (onboard/driver/http.py).
"""

from __future__ import annotations

import collections
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, Protocol

from aiohttp import web

from httpguard import ServerLimits
from onboard.config import display_languages
from onboard.driver.http import CSP, json_body, nonce_of, same_origin_posts
from onboard.driver.model import (
    CANNED_BY_CODE,
    EMERGENCY_SEVERITY,
    SENT_SHOWN_S,
    DriverState,
    driver_state,
)
from onboard.driver.store import KEEP_S, DriverStore
from onboard.journey.diversion import Detour
from onboard.journey.plan import TripPlan
from onboard.journey.states import JourneyState
from onboard.link.commands import Result, typed_as
from onboard.link.outbox import Outbox
from onboard.web.live import LiveFeed
from onboard.web.site import LocalSite
from protocols.nmea.decoder import Fix
from protocols.requests import DriverMessage
from protocols.schemas import Command, Scalar

log = logging.getLogger("busfleet.onboard.driver")

STATIC = Path(__file__).resolve().parent / "static"
MAX_TEXT = 500  # characters of a dispatch message shown; central refuses longer ones
NONCES = 200  # the last action ids remembered, so a repeated POST never sends twice
HOUSEKEEPING_S = 3600.0
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # keep newlines, drop other controls


class RecordEvent(Protocol):
    """`Agent.record_event`: an outbox event; severity >= 3 makes it an alarm. Returns its seq."""

    def __call__(
        self, kind: str, data: dict[str, Scalar], *, severity: int = 0, t: float | None = None
    ) -> int: ...


def position_of(fix: Fix | None) -> tuple[float, float] | None:
    """(lat, lon) of a fix, for the terminal's `position` callable."""
    if fix is None or fix.lat is None or fix.lon is None:
        return None
    return fix.lat, fix.lon


class DriverTerminal(LocalSite[DriverState]):
    """The terminal's state and its HTTP server (an async context manager, or `run()`)."""

    name = "driver terminal"
    prefix = "/driver"
    csp = CSP
    csp_paths = frozenset({"/driver"})
    extra_headers: ClassVar[Mapping[str, str]] = {"X-Frame-Options": "DENY"}  # never framed

    def __init__(
        self,
        outbox: Outbox,
        record: RecordEvent,
        *,
        host: str = "127.0.0.1",
        port: int = 8091,
        position: Callable[[], tuple[float, float] | None] = lambda: None,
        online: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
        heartbeat_s: float = 15.0,
        limits: ServerLimits | None = None,
        language: str = "de",
    ) -> None:
        feed = LiveFeed(DriverState(), heartbeat_s=heartbeat_s)
        super().__init__(host, port, feed, tick_s=tick_s, limits=limits)
        self.store = DriverStore(outbox)
        self.record = record
        self.position = position
        self.online = online
        self.clock = clock
        self._last_housekeeping = 0.0
        self.journey: JourneyState | None = None
        self.plan: TripPlan | None = None
        self.diversion: str | None = None
        self.detour_m: tuple[float, float] | None = None
        self._nonces: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.languages = display_languages(language)
        self.refresh()

    def set_language(self, language: str) -> None:
        """Speak `language` (`display.language`: "de", "en", "de,en"; the first one is shown)
        from now on; a page without ?lang= switches at the next state (remote configuration).
        ValueError for a language the pages have no texts for."""
        self.languages = display_languages(language)
        self.refresh()

    # -- inputs from the agent -----------------------------------------------------------------
    def apply_journey(
        self,
        state: JourneyState | None,
        plan: TripPlan | None = None,
        *,
        notice: str | None = None,
        detour: Detour | None = None,
    ) -> None:
        """The journey tracker's state and the plan it follows (its path makes the map), and
        the diversion in force: its notice and its detour (drawn apart on the map)."""
        self.journey, self.plan, self.diversion = state, plan, notice
        self.detour_m = None
        if detour is not None and detour.leave_m is not None and detour.rejoin_m is not None:
            self.detour_m = (detour.leave_m, detour.rejoin_m)
        self.refresh()

    def on_message_command(self, cmd: Command) -> Result:
        """The `driver_message` command handler (onboard.link.commands): keep it, show it."""
        text = typed_as(cmd, DriverMessage).text  # ValueError: failed, with the reason
        if not text.strip():
            return Result("failed", "driver_message needs a non-empty 'text'")
        text = _CONTROL.sub(" ", text).strip()[:MAX_TEXT]
        self.store.add_message(cmd.id, text, cmd.t, self.clock(), cmd.expires)
        log.info("message %s from dispatch shown to the driver", cmd.id)
        self.refresh()
        return Result("ok")

    # -- the driver's actions ------------------------------------------------------------------
    def send_canned(self, code: str, nonce: str | None = None) -> int:
        """A canned message to dispatch, with the bus's position; KeyError for an unknown code.
        Returns its outbox seq (the first one's, when `nonce` was seen before)."""
        canned = CANNED_BY_CODE[code]
        if nonce is not None and nonce in self._nonces:
            return self._nonces[nonce]
        now = self.clock()
        data: dict[str, Scalar] = {"code": code, "text": canned.label, **self._context()}
        seq = self.record("driver_message", data, severity=canned.severity, t=now)
        self._remember(nonce, seq, "canned", code, now)
        log.info("driver sent %s (seq %d)", code, seq)
        return seq

    def press_emergency(self, nonce: str | None = None) -> int:
        """The silent emergency alarm, with the bus's position. Returns its outbox seq."""
        if nonce is not None and nonce in self._nonces:
            return self._nonces[nonce]
        now = self.clock()
        data: dict[str, Scalar] = {"source": "driver"}
        try:
            data.update(self._context())
        except Exception:  # the alarm goes without its position rather than not at all
            log.exception("emergency alarm without its context")
        # First and alone: the alarm is durable in the outbox (and the link woken) before any
        # bookkeeping of the terminal's, which must never be able to stop it.
        seq = self.record("emergency", data, severity=EMERGENCY_SEVERITY, t=now)
        self._remember(nonce, seq, "emergency", "emergency", now)
        log.warning("emergency alarm from the driver (seq %d)", seq)
        return seq

    def acknowledge(self, msg_id: str) -> bool | None:
        """The driver read a dispatch message: a `driver_ack` event {id} timed now. True if
        newly acknowledged, False if it was already, None if the bus has no such message."""
        now = self.clock()
        with self.store.outbox.transaction():  # acknowledged on the bus and queued, or neither
            newly = self.store.acknowledge(msg_id, now)
            seq = self.record("driver_ack", {"id": msg_id}, t=now) if newly else 0
        if newly:
            self._remember(None, seq, "ack", msg_id, now)
            log.info("driver acknowledged message %s (seq %d)", msg_id, seq)
        return newly

    def _context(self) -> dict[str, Scalar]:
        """Where the bus is and what it drives, for central's dispatcher."""
        out: dict[str, Scalar] = {}
        pos = self.position()
        if pos is not None:
            out["lat"], out["lon"] = round(pos[0], 6), round(pos[1], 6)
        j = self.journey
        if j is not None:
            out.update(trip=j.trip_id, route=j.route_id, stop=j.stop_id)
            if j.block_id:
                out["block"] = j.block_id
            if j.delay_s is not None:
                out["delay_s"] = round(j.delay_s)
        return out

    def _remember(self, nonce: str | None, seq: int, kind: str, code: str, t: float) -> None:
        if nonce is not None:
            self._nonces[nonce] = seq
            while len(self._nonces) > NONCES:
                self._nonces.popitem(last=False)
        try:
            self.store.add_outgoing(seq, kind, code, t)
        except sqlite3.Error as exc:  # the record itself is safe in the outbox
            log.warning("could not list seq %d on the terminal: %s", seq, exc)
        self.refresh()

    # -- state ---------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Recompute the state for now; True if it changed (and was sent to the page)."""
        now = self.clock()
        state = driver_state(
            self.journey,
            self.plan,
            self.store.messages(),
            self.store.outgoing(now - SENT_SHOWN_S),
            now=now,
            online=self.online(),
            diversion=self.diversion,
            detour_m=self.detour_m,
            languages=self.languages,
        )
        return self.feed.publish(state)

    # -- serving -------------------------------------------------------------------------------
    def application(self) -> web.Application:
        # Small bodies only, and every POST from the terminal's own page (onboard/driver/http.py).
        return web.Application(client_max_size=4096, middlewares=[same_origin_posts])

    def own_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/driver", self._page)
        app.router.add_post("/driver/canned", self._post_canned)
        app.router.add_post("/driver/emergency", self._post_emergency)
        app.router.add_post("/driver/ack", self._post_ack)
        app.router.add_static("/driver/static", STATIC)

    def tick(self) -> None:
        """Receipts, the uplink and the clock change what is shown without telling anyone;
        once an hour, forget old messages and delivered items."""
        now = self.clock()
        if now - self._last_housekeeping >= HOUSEKEEPING_S:
            self._last_housekeeping = now
            self.store.forget(now - KEEP_S)
        self.refresh()

    # -- handlers ------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/driver")

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "driver.html", headers={"Cache-Control": "no-cache"})

    async def _post_canned(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        code = body.get("code")
        if not isinstance(code, str) or code not in CANNED_BY_CODE:
            raise web.HTTPBadRequest(text="unknown canned message")
        return web.json_response({"seq": self.send_canned(code, nonce_of(body))})

    async def _post_emergency(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        return web.json_response({"seq": self.press_emergency(nonce_of(body))})

    async def _post_ack(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        msg_id = body.get("id")
        if not isinstance(msg_id, str):
            raise web.HTTPBadRequest(text="ack needs the message id")
        result = self.acknowledge(msg_id)
        if result is None:
            raise web.HTTPNotFound(text="no such message on this bus")
        return web.json_response({"acknowledged": True, "new": result})
