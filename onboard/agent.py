"""The bus agent: GPS, CAN, telemetry into the outbox, the fleet link, desired state.

Every long-running loop is a named task in one TaskGroup. Inputs only update the latest
state; the telemetry task samples it once per interval, so a burst on the CAN bus or a fast
GPS never grows a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from onboard.ads import AdsRuntime, PlayRecord, Showing
from onboard.ads.http import local_media_routes, local_url
from onboard.config import AgentConfig
from onboard.display import AdSlot, Display
from onboard.display.journey import journey_view
from onboard.driver import DriverTerminal, position_of
from onboard.gps.backends import open_gps
from onboard.gps.base import GpsSource
from onboard.gps.quality import GpsQuality, QualityLimits
from onboard.journey.runtime import JourneyRuntime
from onboard.link.commands import Commands, Result
from onboard.link.desired import AppliedStore, Outcome, evaluate, reported
from onboard.link.mqtt import Link
from onboard.link.outbox import Outbox
from onboard.portal import PortalContent, PortalService, build_portal, content_from_state
from onboard.portal.journey import with_journey
from onboard.store import open_store
from onboard.vehicle.can_input import CanInput
from protocols import codec
from protocols.ads.fence import accuracy_from_hdop
from protocols.errors import GtfsError
from protocols.gtfs.feed import read_feed
from protocols.j1939.vehicle import VehicleEvent, VehicleState
from protocols.nmea.decoder import Fix
from protocols.schemas import Command, Event, Scalar, TelemetryRecord, Vehicle

log = logging.getLogger("busfleet.onboard.agent")

COUNTERS_EVERY_S = 30.0
HOUSEKEEPING_EVERY_S = 60.0


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.bus_id = config.bus.id
        # agent.sqlite, opened once here and handed to every part that keeps state.
        self.store = open_store(Path(config.bus.data_dir) / "agent.sqlite")
        self.outbox = Outbox(self.store, budget_bytes=int(config.outbox.budget_mb * 1_000_000))
        self.applied_store = AppliedStore(self.store)
        self.outcome = Outcome(self.applied_store.load())
        self.commands = Commands(
            self.outbox,
            {
                "resend": self._cmd_resend,
                "announce": self._cmd_announce,
                "restart": self._cmd_restart,
            },
        )
        self.link = Link(config, self.outbox, self.on_desired, self._on_command)
        self.announcements: list[str] = []
        self.restart_requested = asyncio.Event()
        g = config.gps
        self.quality = GpsQuality(
            QualityLimits(
                stale_after_s=g.stale_after_s,
                max_hdop=g.max_hdop,
                max_speed_mps=g.max_speed_mps,
                dead_reckon_max_s=g.dead_reckon_max_s,
            )
        )
        self.gps: GpsSource | None = open_gps(g, self.on_fix)
        self._can_frames_seen = 0
        self.can: CanInput | None = None
        if config.can.interface != "none":
            self.can = CanInput(
                config.can.interface,
                config.can.channel,
                bitrate=config.can.bitrate,
                on_event=self._on_vehicle_event,
            )
        self.records = 0
        # Journey tracking (onboard/journey_runtime.py): set once the GTFS feed is read.
        self.journey: JourneyRuntime | None = None
        # The passenger display; it shows the applied state's messages even while offline.
        self.display: Display | None = None
        if config.display.enabled:
            self.display = Display(config.display.host, config.display.port)
            self.display.apply_desired(self.outcome.applied)
        # The driver's terminal (onboard/driver/): dispatch messages arrive as a command; canned
        # messages, acknowledgements and the emergency alarm leave through the outbox.
        self.driver: DriverTerminal | None = None
        if config.driver.enabled:
            self.driver = DriverTerminal(
                self.outbox,
                self.record_event,
                host=config.driver.host,
                port=config.driver.port,
                position=lambda: position_of(self.quality.last_fix),
                online=self.link.connected.is_set,
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
            self.ads.offer(self.outcome.applied)
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
        self.link.set_reported(self._reported_payload())

    def _portal_content(self) -> PortalContent:
        """What the agent knows, plus the journey (next stops, a diversion) when tracked."""
        content = content_from_state(self.outcome.applied, self.announcements, time.time())
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

    # -- inputs ---------------------------------------------------------------------------
    def on_fix(self, fix: Fix, at: float) -> None:
        self.quality.update_fix(fix, at)
        if self.ads and fix.lat is not None and fix.lon is not None:
            self.ads.on_position(fix.lat, fix.lon, accuracy_from_hdop(fix.hdop))

    def on_desired(self, payload: bytes) -> None:
        outcome = evaluate(self.outcome.applied, payload, self.bus_id)
        if outcome.error:
            log.warning(
                "desired state rejected (version %s): %s", outcome.rejected_version, outcome.error
            )
        elif outcome.applied is not None and outcome.applied != self.outcome.applied:
            self.applied_store.save(outcome.applied)
            log.info("desired state version %d applied", outcome.applied.version)
        self.outcome = outcome
        if self.display:
            self.display.apply_desired(outcome.applied)
        if self.ads:
            self.ads.offer(outcome.applied)
        self._journey_assign()
        self.link.set_reported(self._reported_payload())

    # -- journey --------------------------------------------------------------------------
    async def _load_journey(self) -> None:
        """Read the GTFS feed once, in a thread (it takes seconds); unreadable: no tracking,
        the rest of the agent runs on."""
        path = self.config.journey.gtfs
        try:
            feed = await asyncio.to_thread(read_feed, path)
        except (OSError, GtfsError) as exc:
            log.error("journey tracking off: cannot read the GTFS feed %s: %s", path, exc)
            return
        self.journey = JourneyRuntime(feed)
        self._journey_assign()

    def _journey_assign(self) -> None:
        applied = self.outcome.applied
        if self.journey is not None:
            assignment = applied.assignment if applied else None
            self.journey.assign(assignment, applied.diversions if applied else (), time.time())

    def _track(self, record: TelemetryRecord) -> None:
        """One sample into the journey tracker; its events into the outbox, its view on the
        display, and the reported state republished at stop granularity."""
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
        if result.republish:
            self.link.set_reported(self._reported_payload())

    def _on_vehicle_event(self, event: VehicleEvent) -> None:
        data: dict[str, Scalar] = {}
        if event.door is not None:
            data["door"] = event.door
        if event.dtc is not None:
            data.update(spn=event.dtc.spn, fmi=event.dtc.fmi)
        self.record_event(event.kind, data, t=event.t)

    def record_event(
        self, kind: str, data: dict[str, Scalar], *, severity: int = 0, t: float | None = None
    ) -> int:
        """Put an event into the outbox (alarms, severity >= 3, go before everything else)."""
        at = time.time() if t is None else t
        kind_in_outbox = "emergency" if severity >= 4 else "alarm" if severity >= 3 else "event"
        seq = self.outbox.put(
            kind_in_outbox,
            lambda seq: codec.encode(Event(seq=seq, t=at, kind=kind, severity=severity, data=data)),
        )
        self.link.wake.set()
        return seq

    # -- commands -------------------------------------------------------------------------
    def _on_command(self, payload: bytes) -> None:
        if self.commands.receive(payload) is not None:
            self.link.wake.set()

    def _cmd_resend(self, cmd: Command) -> Result:
        since = cmd.args.get("since")
        if not isinstance(since, (int, float)) or isinstance(since, bool):
            return Result("failed", "resend needs a numeric 'since' (unix seconds)")
        count = self.outbox.requeue_since(float(since))
        return Result("ok", data={"records": count})

    def _cmd_announce(self, cmd: Command) -> Result:
        text = cmd.args.get("text")
        if not isinstance(text, str) or not text.strip():
            return Result("failed", "announce needs a non-empty 'text'")
        self.announcements.append(text[:500])
        return Result("ok")

    def _cmd_restart(self, cmd: Command) -> Result:
        self.restart_requested.set()
        return Result("ok")

    # -- outputs --------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return {
            "nmea_rejected": self.gps.rejected if self.gps else 0,
            "can_frames": self.can.frames if self.can else 0,
            "can_rejected": int(self.can.decoder.stats.malformed) if self.can else 0,
            "records": self.records,
            "gps_lost": self.quality.stats.lost,
            "commands_rejected": self.commands.rejected,
            "outbox_dropped": self.outbox.dropped,
            "outbox": self.outbox.count(),
        }

    def _reported_payload(self) -> bytes:
        state = reported(self.outcome, self.bus_id, self.counters())
        if self.journey is not None:
            state = msgspec.structs.replace(state, journey=self.journey.status())
        return codec.encode(state)

    def sample(self) -> TelemetryRecord:
        """The record for this interval (seq 0: the outbox numbers it): the position (a good
        fix, or dead reckoning while the GPS is lost, marked estimated) and the vehicle
        summary."""
        t = time.time()
        pos = None
        if self.gps is not None:
            can_speed = None
            can = self.can
            # Wheel speed counts only if CAN frames came since the last sample.
            if can and can.frames > self._can_frames_seen and can.state.speed_kmh is not None:
                can_speed = can.state.speed_kmh / 3.6
            self._can_frames_seen = can.frames if can else 0
            pos, events = self.quality.tick(time.monotonic(), can_speed)
            for e in events:
                self.record_event(e.kind, e.data, severity=e.severity)
            last = self.quality.last_fix
            if pos is not None and not pos.estimated and last is not None and last.time:
                t = last.time.timestamp()
        veh = _vehicle(self.can.state) if self.can and self.can.frames else None
        return TelemetryRecord(seq=0, t=t, pos=pos, veh=veh)

    async def _telemetry(self) -> None:
        interval = self.config.telemetry.interval_s
        next_at = time.monotonic()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            record = self.sample()
            self._track(record)
            if self.display:
                self.display.update(online=self.link.connected.is_set())
            if record.pos is None and record.veh is None:
                continue
            self.outbox.put("telemetry", _numbered(record))
            self.records += 1
            self.link.wake.set()

    async def _housekeeping(self) -> None:
        history_s = self.config.outbox.history_h * 3600
        while True:
            self.outbox.forget_history(time.time() - history_s)
            dropped = self.outbox.enforce_budget()
            if dropped:
                text = ",".join(f"{a}-{b}" for a, b in dropped)
                count = sum(b - a + 1 for a, b in dropped)
                log.warning("outbox over its disk budget: dropped %d telemetry records", count)
                self.record_event("dropped", {"ranges": text[:4000], "records": count}, severity=2)
            await asyncio.sleep(HOUSEKEEPING_EVERY_S)

    async def _counters(self) -> None:
        while True:
            await asyncio.sleep(COUNTERS_EVERY_S)
            self.link.set_reported(self._reported_payload())

    async def run(self) -> None:
        """Run until cancelled or until a restart command (then return, to be run again)."""
        log.info("agent %s starting (outbox %d records)", self.bus_id, self.outbox.count())
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.link.run(), name="link"),
                    tg.create_task(self._telemetry(), name="telemetry"),
                    tg.create_task(self._counters(), name="counters"),
                    tg.create_task(self._housekeeping(), name="housekeeping"),
                ]
                if self.gps:
                    tasks.append(tg.create_task(self.gps.run(), name="gps"))
                if self.can:
                    tasks.append(tg.create_task(self.can.run(), name="can"))
                if self.display:
                    tasks.append(tg.create_task(self.display.run(), name="display"))
                if self.driver:
                    tasks.append(tg.create_task(self.driver.run(), name="driver"))
                if self.portal:
                    tasks.append(tg.create_task(self.portal.run(), name="portal"))
                if self.ads:
                    tasks.append(tg.create_task(self.ads.run(), name="ads"))
                if self.config.journey.gtfs and self.journey is None:  # None: not given already
                    tasks.append(tg.create_task(self._load_journey(), name="journey-feed"))
                await self.restart_requested.wait()
                await self._drain_acks()
                log.info("restarting on command")
                for task in tasks:
                    task.cancel()
        finally:
            self.store.close()

    async def _drain_acks(self) -> None:
        """Give the restart command's result a moment (5 s at most) to reach central first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                # The condition lives in SQLite: no event to wait on, so poll (ASYNC110).
                while self.outbox.pending(1, kind="cmd_ack"):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)


def _numbered(record: TelemetryRecord) -> Callable[[int], bytes]:
    """The body builder of one record: encoded once, with the number the outbox gives it."""
    return lambda seq: codec.encode(msgspec.structs.replace(record, seq=seq))


def _vehicle(state: VehicleState) -> Vehicle:
    return Vehicle(
        speed_kmh=state.speed_kmh,
        rpm=state.engine_rpm,
        doors_open=state.doors_open,
        coolant_c=state.coolant_c,
        fuel_pct=state.fuel_pct,
        odometer_m=state.odometer_m,
    )
