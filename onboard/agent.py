"""The bus agent, the composition root: build the parts, wire them, run them in one TaskGroup.

No behaviour of its own lives here; each part is in its room and this module only says who
talks to whom:

- agent.sqlite (onboard/store.py), opened once, handed to the outbox, the applied state, the
  commands, the driver terminal and the portal;
- inputs: GPS (onboard/gps/: a backend and the judge of its fixes), CAN (onboard/vehicle/);
- telemetry (onboard/telemetry.py) samples them into the outbox; events from every part go
  through one recorder (onboard/recorder.py); the link (onboard/link/) sends the outbox and
  brings desired state and commands;
- the timetable (onboard/timetable/) fetches the version central publishes and switches to it
  at its valid_from; the journey core (onboard/journey/) tracks the applied assignment on it
  with each sample (agent.toml's `[journey] gtfs` only until a central timetable ran); the
  presentations (display, driver terminal, portal, ads) each turn what they get into their view.

Every long-running loop is a named task in one TaskGroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

import msgspec

from httpguard import ConnectionGuard
from onboard.ads.http import local_media_routes, local_url
from onboard.ads.player import PlayRecord, Showing
from onboard.ads.runtime import AdsRuntime
from onboard.audio.runtime import AudioRuntime, open_audio
from onboard.audio.stops import StopAnnouncer
from onboard.config import (
    AgentConfig,
    check_link_security,
    check_portal_blocking,
    display_languages,
)
from onboard.display.journey import journey_view
from onboard.display.model import AdSlot
from onboard.display.server import Display
from onboard.driver.server import DriverTerminal, position_of
from onboard.gps.backends import open_gps
from onboard.gps.quality import GpsQuality, QualityLimits
from onboard.health.runtime import HealthRuntime
from onboard.journey.runtime import JourneyRuntime
from onboard.link.commands import Commands
from onboard.link.desired import AppliedStore, Outcome, evaluate, reported
from onboard.link.mqtt import Link
from onboard.link.outbox import Outbox
from onboard.link.upkeep import OutboxUpkeep
from onboard.logs.remote import LogCommands
from onboard.portal.content import PortalContent, content_from_state
from onboard.portal.journey import with_journey
from onboard.portal.service import PortalService, build_portal
from onboard.recorder import EventRecorder
from onboard.remote import AgentCommands
from onboard.remote_config import RemoteConfig, trip_running
from onboard.store import open_store
from onboard.telemetry import Telemetry
from onboard.timetable.runtime import TimetableRuntime
from onboard.update.runtime import UpdateRuntime
from onboard.vehicle.can_input import CanInput
from protocols import codec
from protocols.ads.fence import accuracy_from_hdop
from protocols.errors import GtfsError
from protocols.gtfs.feed import Feed, read_feed
from protocols.j1939.vehicle import VehicleEvent
from protocols.nmea.decoder import Fix
from protocols.schemas import Scalar, TelemetryRecord, TimetableRef

log = logging.getLogger("busfleet.onboard.agent")

COUNTERS_EVERY_S = 30.0
# Telemetry intervals without a sample before the agent calls itself unhealthy (watchdog).
HEALTHY_TICKS = 10


class _Runs(Protocol):
    """A part with a long-running task."""

    def run(self) -> Coroutine[Any, Any, None]: ...


class Agent:
    """One bus: its parts, built from agent.toml and wired together."""

    def __init__(self, config: AgentConfig) -> None:
        # Checked here too: a config built in code never went through parse_config.
        check_link_security(config)
        check_portal_blocking(config)
        self.config = config
        self.bus_id = config.bus.id
        # agent.sqlite, opened once here and handed to every part that keeps state.
        self.store = open_store(Path(config.bus.data_dir) / "agent.sqlite")
        # Central's settings over agent.toml, kept through restarts (onboard/remote_config.py).
        self.remote_config = RemoteConfig(self.store, config, lambda k, d: self.record_event(k, d))
        self.config = config = self.remote_config.running
        self.outbox = Outbox(self.store, budget_bytes=int(config.outbox.budget_mb * 1_000_000))
        self.applied_store = AppliedStore(self.store)
        self.outcome = Outcome(self.applied_store.load())
        self.desired_rejected = 0  # desired documents refused (the last one's error is reported)
        self.last_sample = time.monotonic()  # the telemetry loop's last tick (see `healthy`)
        # Live announcements (issue 17): spoken by `audio` (built below), shown on `display`.
        self.remote = AgentCommands(
            self.outbox, lambda: self.audio, lambda: self.display, self.record_event
        )
        self.commands = Commands(self.outbox, self.remote.handlers())
        self.commands.handlers.update(LogCommands.for_agent(config, self.outbox).handlers())
        self.link = Link(config, self.outbox, self.on_desired, self._on_command)
        self.events = EventRecorder(self.outbox, self.link.wake.set)
        self.upkeep = OutboxUpkeep(
            self.outbox, self.events, history_s=config.outbox.history_h * 3600
        )
        self.journey: JourneyRuntime | None = None  # set once a timetable is read
        self.journey_local = False  # the journey runs on agent.toml's bootstrap feed
        self.timetable = TimetableRuntime(
            self.store,
            Path(config.bus.data_dir) / "timetables",
            on_feed=self._on_timetable,
            on_event=lambda kind, data, severity: self.record_event(kind, data, severity=severity),
            on_change=lambda: self.link.set_reported(self._reported_payload()),
            budget_bytes=int(config.journey.timetable_budget_mb * 1_000_000),
            base_url=config.journey.timetable_url,
        )
        self.timetable.offer(self.outcome.applied.timetable if self.outcome.applied else None)
        # Fleet health: agent_start at every start, then disk, memory, clock, modem... (issue 16)
        self.health = HealthRuntime(config.health, config.bus.data_dir, self.record_event)
        self._build_inputs()
        self._build_presentations()
        # Spoken announcements (onboard/audio/): one queue for stops (from the journey, below in
        # _track) and city hall's live ones; `audio` exists (speaking nothing) when disabled.
        self.audio = open_audio(
            config.audio, config.bus.data_dir, self.record_event, lambda: self.ads
        )
        self.announcer = StopAnnouncer(
            self.audio,
            lambda: (
                self.display.inputs.languages
                if self.display
                else display_languages(self.config.display.language)
            ),
        )
        # Software updates (onboard/update/): fetch, install into a slot, switch, prove, commit.
        self.update = UpdateRuntime.of_agent(
            self,
            lambda: trip_running(self.journey),
            lambda: self.link.set_reported(self._reported_payload()),
        )
        self.update.offer(self.outcome.applied, live=False)
        self._apply_config()
        self.link.set_reported(self._reported_payload())

    def _build_inputs(self) -> None:
        g, c = self.config.gps, self.config.can
        self.quality = GpsQuality(
            QualityLimits(
                stale_after_s=g.stale_after_s,
                max_hdop=g.max_hdop,
                max_speed_mps=g.max_speed_mps,
                dead_reckon_max_s=g.dead_reckon_max_s,
            )
        )
        self.gps = open_gps(g, self.on_fix)
        self.can: CanInput | None = None
        if c.interface != "none":
            self.can = CanInput(
                c.interface, c.channel, bitrate=c.bitrate, on_event=self._on_vehicle_event
            )
        self.telemetry = Telemetry(
            self.outbox,
            self.events,
            self.quality,
            self.gps,
            self.can,
            interval_s=self.config.telemetry.interval_s,
            wake=self.link.wake.set,
            on_sample=self._on_sample,
        )

    def _build_presentations(self) -> None:
        config, applied = self.config, self.outcome.applied
        # The passenger display; it shows the applied state's messages even while offline.
        self.display: Display | None = None
        if config.display.enabled:
            self.display = Display.from_config(config.display)
            self.display.apply_desired(applied)
        # The driver's terminal: dispatch messages arrive as a command; canned messages,
        # acknowledgements and the emergency alarm leave through the outbox.
        self.driver: DriverTerminal | None = None
        if config.driver.enabled:
            self.driver = DriverTerminal(
                self.outbox,
                self.record_event,
                host=config.driver.host,
                port=config.driver.port,
                position=lambda: position_of(self.quality.last_fix),
                online=self.link.connected.is_set,
                language=config.display.language,  # the displays' languages, German first
            )
            self.commands.handlers["driver_message"] = self.driver.on_message_command
        # Ads: the applied playlist, played offline in the display's slot; plays are events.
        self.ads: AdsRuntime | None = None
        if config.ads.enabled:
            a = config.ads
            self.ads = AdsRuntime(
                self.bus_id,
                Path(config.bus.data_dir) / "media",
                self._on_play,
                budget_bytes=int(a.budget_mb * 1_000_000),
                lookahead_days=a.lookahead_days,
                media_url=a.media_url,
                record_location=a.record_location,
                max_accuracy_m=a.max_accuracy_m,
            )
            self.ads.on_show = self._show_ad
            self.ads.offer(applied)
            if self.display:  # the slot loads the cached files from the display's origin
                self.display.add_routes(local_media_routes(self.ads.cache))
        # The passenger Wi-Fi portal; feedback and statistics leave as outbox events.
        self.portal: PortalService | None = None
        if config.portal.enabled:
            self.portal = build_portal(
                config.portal,
                data_dir=config.bus.data_dir,
                store=self.store,
                content=self._portal_content,
                on_feedback=lambda c, t: self._portal_event(
                    "passenger_feedback", {"category": c, "text": t}
                ),
                on_stats=lambda counts: self._portal_event("portal_stats", {**counts}),
                extra_blocked=[config.mqtt.host],
            )

    # -- wiring: what one part hands another -------------------------------------------------
    @property
    def records(self) -> int:
        """Telemetry records stored since start."""
        return self.telemetry.records

    def record_event(
        self, kind: str, data: dict[str, Scalar], *, severity: int = 0, t: float | None = None
    ) -> int:
        """Put an event into the outbox (onboard/recorder.py); returns its sequence number."""
        return self.events.record(kind, data, severity=severity, t=t)

    def on_fix(self, fix: Fix, at: float) -> None:
        self.quality.update_fix(fix, at)
        if self.ads and fix.lat is not None and fix.lon is not None:
            self.ads.on_position(fix.lat, fix.lon, accuracy_from_hdop(fix.hdop))

    def on_desired(self, payload: bytes) -> None:
        outcome = evaluate(self.outcome.applied, payload, self.bus_id)
        if outcome.error:
            self.desired_rejected += 1
            log.warning(
                "desired state rejected (version %s): %s", outcome.rejected_version, outcome.error
            )
        elif outcome.applied is not None and outcome.applied != self.outcome.applied:
            self.applied_store.save(outcome.applied)
            log.info("desired state version %d applied", outcome.applied.version)
        self.outcome = outcome
        if not outcome.error:
            self.update.offer(outcome.applied)
        self._apply_config()
        if self.display:
            self.display.apply_desired(outcome.applied)
        if self.ads:
            self.ads.offer(outcome.applied)
        self.timetable.offer(outcome.applied.timetable if outcome.applied else None)
        self._journey_assign()
        self.link.set_reported(self._reported_payload())

    def _apply_config(self) -> None:
        if self.outcome.applied is not None:  # nothing applied yet: the kept settings run on
            self.remote_config.offer(self.outcome.applied.config, self)

    def _on_command(self, payload: bytes) -> None:
        if self.commands.receive(payload) is not None:
            self.link.wake.set()

    def _on_vehicle_event(self, event: VehicleEvent) -> None:
        data: dict[str, Scalar] = {}
        if event.door is not None:
            data["door"] = event.door
        if event.dtc is not None:
            data.update(spn=event.dtc.spn, fmi=event.dtc.fmi)
        self.record_event(event.kind, data, t=event.t)

    def _on_sample(self, record: TelemetryRecord) -> None:
        self.last_sample = time.monotonic()
        self._track(record)
        if self.display:
            self.display.update(online=self.link.connected.is_set())

    def _portal_content(self) -> PortalContent:
        """What the agent knows, plus the journey (next stops, a diversion) when tracked."""
        now = time.time()
        content = content_from_state(self.outcome.applied, self.remote.announcements, now)
        return with_journey(content, self.journey) if self.journey else content

    def _portal_event(self, kind: str, data: dict[str, Scalar]) -> None:
        self.record_event(kind, data)

    def _on_play(self, record: PlayRecord) -> None:
        """Proof of play: an outbox event, so it reaches central once, outage or not."""
        self.record_event("play", record.data(), t=record.start)

    def _show_ad(self, showing: Showing | None) -> None:
        if self.display:
            slot = None
            if showing is not None:
                slot = AdSlot(showing.item_id, local_url(showing.media, showing.mime))
            self.display.update(ad=slot)

    # -- journey ---------------------------------------------------------------------------
    async def _timetables(self) -> None:
        """The timetable task: the running version from disk (else agent.toml's bootstrap
        feed; else no tracking, said once by a `no_timetable` event), then follow central."""
        feed = await self.timetable.load_running()
        if feed is not None:
            self._start_journey(feed)
        elif self.journey is None and self.config.journey.gtfs:
            await self._load_journey()
        if self.journey is None:
            log.warning("no timetable: no journey tracking until central sends one")
            self.record_event(
                "no_timetable", {"staged": self.timetable.staged is not None}, severity=1
            )
        self.link.set_reported(self._reported_payload())
        await self.timetable.run()

    async def _load_journey(self) -> None:
        """Read the bootstrap GTFS feed, in a thread (it takes seconds); unreadable: no
        tracking, the rest of the agent runs on."""
        path = self.config.journey.gtfs
        try:
            feed = await asyncio.to_thread(read_feed, path)
        except (OSError, GtfsError) as exc:
            log.error("journey tracking off: cannot read the GTFS feed %s: %s", path, exc)
            return
        if self.timetable.running is None:  # central's arrived meanwhile: it wins
            self._start_journey(feed)
            self.journey_local = True

    def _start_journey(self, feed: Feed) -> None:
        self.journey = JourneyRuntime(feed)
        self.journey_local = False
        self._journey_assign()

    def _on_timetable(self, feed: Feed, ref: TimetableRef) -> None:
        """A central timetable runs now: the journey moves to it (a trip in progress first
        finishes on its own), the presentations show it at once."""
        if self.journey is None:
            self._start_journey(feed)
        else:
            self.journey.switch_feed(feed, time.time())
            self.journey_local = False
        log.info("journey on timetable v%d", ref.version)
        self._present_journey()

    def _journey_assign(self) -> None:
        applied = self.outcome.applied
        if self.journey is not None:
            assignment = applied.assignment if applied else None
            self.journey.assign(assignment, applied.diversions if applied else (), time.time())
            self.journey.set_model(applied.predictions if applied else None)  # issue 17

    def _track(self, record: TelemetryRecord) -> None:
        """One sample into the journey core; its events into the outbox, its state to each
        presentation, and the reported state republished at stop granularity."""
        journey = self.journey
        if journey is None:
            return
        veh = self.can.state if self.can and self.can.frames else None
        result = journey.update(
            record.t,
            record.pos,
            doors_open=veh.doors_open if veh else None,
            stop_requested=veh.stop_request if veh else None,
        )
        for e in result.events:
            self.record_event(e.kind, e.data(), severity=e.severity, t=e.t)
        self.announcer.on_journey(record.t, result.events, journey.state, journey.plan)
        self._present_journey()
        if result.republish:
            self.link.set_reported(self._reported_payload())

    def _present_journey(self) -> None:
        """The journey's state to each presentation."""
        journey = self.journey
        if journey is None:
            return
        state = journey.state
        if self.display:
            requested = state.stop_requested if state else None
            self.display.update(journey=journey_view(journey), diversion=journey.notice())
            if requested is not None:
                self.display.update(stop_requested=requested)
        if self.driver:
            plan = journey.tracker.plan if journey.tracker else None
            self.driver.apply_journey(state, plan, notice=journey.notice(), detour=journey.detour)
        if self.ads and state is not None:
            self.ads.set_journey(state.route_id, state.stop_id)

    # -- reported state --------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return {
            "nmea_rejected": self.gps.rejected if self.gps else 0,
            "can_frames": self.can.frames if self.can else 0,
            "can_rejected": int(self.can.decoder.stats.malformed) if self.can else 0,
            "records": self.records,
            "gps_lost": self.quality.stats.lost,
            "commands_rejected": self.commands.rejected,
            "desired_rejected": self.desired_rejected,
            "inbound_rejected": self.link.rejected,
            "outbox_unsendable": self.link.unsendable,
            "http_refused": sum(g.refused + g.slow_bodies for g in self._guards()),
            "outbox_dropped": self.outbox.dropped,
            "out_of_bounds": self.events.bounds.dropped + self.events.bounds.unfit,
            "outbox": self.outbox.count(),
            "config_pending": len(self.remote_config.pending),  # settings awaiting a restart
        }

    def _guards(self) -> list[ConnectionGuard]:
        """The web servers' guards: connections over the per-address limit, slow bodies."""
        sites = (self.display, self.driver, self.portal)
        return [site.guard for site in sites if site is not None]

    def _reported_payload(self) -> bytes:
        state = self.remote_config.reported(reported(self.outcome, self.bus_id, self.counters()))
        timetable = self.timetable.report(local=self.journey_local)
        state = msgspec.structs.replace(state, timetable=timetable, release=self.update.report())
        if self.journey is not None:
            state = msgspec.structs.replace(state, journey=self.journey.status())
        return codec.encode(self.events.bounds.fit(state) or state)

    async def _counters(self) -> None:
        while True:
            await asyncio.sleep(COUNTERS_EVERY_S)
            self.link.set_reported(self._reported_payload())

    # -- running ---------------------------------------------------------------------------
    def healthy(self) -> bool:
        """For systemd's watchdog (busfleet/watchdog.py): the telemetry loop sampled within the
        last HEALTHY_TICKS intervals. The ping task itself runs on the agent's event loop, so
        a loop that blocks stops the pings anyway; this also catches a loop that runs while the
        bus's one job, sampling, has hung or died."""
        stale_after = HEALTHY_TICKS * self.config.telemetry.interval_s
        return time.monotonic() - self.last_sample <= stale_after

    async def run(self) -> None:
        """Run until cancelled or until a restart command (then return, to be run again)."""
        log.info("agent %s starting (outbox %d records)", self.bus_id, self.outbox.count())
        self._warn_unenforced_portal()
        self.last_sample = time.monotonic()  # the time it took to start is not a hang
        parts = {
            "link": self.link.run(),
            "telemetry": self.telemetry.run(),
            "counters": self._counters(),
            "housekeeping": self.upkeep.run(),
            "health": self.health.run(),
            "remote-config": self.remote_config.run(
                self.remote.restart_requested, lambda: trip_running(self.journey)
            ),
        }
        optional: dict[str, _Runs | None] = {
            "gps": self.gps,
            "can": self.can,
            "display": self.display,
            "driver": self.driver,
            "portal": self.portal,
            "ads": self.ads,
            "audio": self.audio if isinstance(self.audio, AudioRuntime) else None,
        }
        parts.update({name: part.run() for name, part in optional.items() if part is not None})
        parts["timetable"] = self._timetables()
        parts["update"] = self.update.run()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(coro, name=name) for name, coro in parts.items()]
                await self.remote.restart_requested.wait()
                await self._drain_acks()
                log.info("restarting (on command, or for settings from central)")
                for task in tasks:
                    task.cancel()
        finally:
            self.store.close()

    def _warn_unenforced_portal(self) -> None:
        """A portal without its firewall lets every passenger through: say so, here and to
        central (an event of warning severity), at every start."""
        firewall = self.config.portal.firewall
        if self.portal is None or firewall == "nftables":
            return
        log.warning(
            "portal enabled with firewall = %r: NOTHING IS ENFORCED (every passenger is online"
            ' without accepting, nothing is blocked); set portal.firewall = "nftables" on a bus',
            firewall,
        )
        self.record_event("portal_unenforced", {"firewall": firewall}, severity=2)

    async def _drain_acks(self) -> None:
        """Give the restart command's result a moment (5 s at most) to reach central first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                # The condition lives in SQLite: no event to wait on, so poll (ASYNC110).
                while self.outbox.pending(1, kind="cmd_ack"):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
