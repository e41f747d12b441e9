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
from pathlib import Path

from onboard.applied import AppliedStore, Outcome, evaluate, reported
from onboard.can_input import CanInput
from onboard.commands import Commands, Result
from onboard.config import AgentConfig
from onboard.gps_quality import GpsQuality, QualityLimits
from onboard.gps_sources import GpsSource, make_gps_source
from onboard.link import Link
from onboard.outbox import Outbox
from protocols import codec
from protocols.nmea import Fix
from protocols.schemas import Command, Event, Scalar, TelemetryRecord, Vehicle
from protocols.vehicle import VehicleEvent, VehicleState

log = logging.getLogger("busfleet.onboard.agent")

COUNTERS_EVERY_S = 30.0
HOUSEKEEPING_EVERY_S = 60.0


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.bus_id = config.bus.id
        self.outbox = Outbox(
            Path(config.bus.data_dir) / "agent.sqlite",
            budget_bytes=int(config.outbox.budget_mb * 1_000_000),
        )
        self.applied_store = AppliedStore(self.outbox)
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
        self.gps: GpsSource | None = make_gps_source(
            g.source,
            device=g.device,
            baud=g.baud,
            gpsd_host=g.gpsd_host,
            gpsd_port=g.gpsd_port,
            replay_path=g.replay_path,
            replay_speed=g.replay_speed,
            replay_loop=g.replay_loop,
            on_fix=self.on_fix,
        )
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
        self.link.set_reported(self._reported_payload())

    # -- inputs ---------------------------------------------------------------------------
    def on_fix(self, fix: Fix, at: float) -> None:
        self.quality.update_fix(fix, at)

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
        event = Event(
            seq=0, t=time.time() if t is None else t, kind=kind, severity=severity, data=data
        )
        seq = self.outbox.append("alarm" if severity >= 3 else "event", codec.encode(event))
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
        return codec.encode(reported(self.outcome, self.bus_id, self.counters()))

    def sample(self) -> TelemetryRecord:
        """The record for this interval: the position (a good fix, or dead reckoning while
        the GPS is lost, marked estimated) and the vehicle summary."""
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
            if record.pos is None and record.veh is None:
                continue
            self.outbox.append("telemetry", codec.encode(record))
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
                await self.restart_requested.wait()
                await self._drain_acks()
                log.info("restarting on command")
                for task in tasks:
                    task.cancel()
        finally:
            self.outbox.close()

    async def _drain_acks(self) -> None:
        """Give the restart command's result a moment (5 s at most) to reach central first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                # The condition lives in SQLite: no event to wait on, so poll (ASYNC110).
                while self.outbox.pending(1, kind="cmd_ack"):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)


def _vehicle(state: VehicleState) -> Vehicle:
    return Vehicle(
        speed_kmh=state.speed_kmh,
        rpm=state.engine_rpm,
        doors_open=state.doors_open,
        coolant_c=state.coolant_c,
        fuel_pct=state.fuel_pct,
        odometer_m=state.odometer_m,
    )
