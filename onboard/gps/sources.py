"""GPS sources behind one small interface, chosen by `gps.source` in the agent's config.

Every source has `async run()` (runs until cancelled, reconnecting by itself) and calls
`on_fix(fix, monotonic_at)` for each fix: one per receiver epoch from our NMEA decoder, one per
TPV report from gpsd (which reports an epoch several times as its sentences arrive, filling
in). `rejected` counts the input a source threw away. A source never judges fixes: a receiver
that goes quiet or loses its fix is onboard.gps_quality's business.

- `serial`: NMEA from a receiver on a serial port, decoded by our own decoder
  (`onboard.gps_serial.SerialGps`); survives the receiver being unplugged and plugged back.
- `gpsd`: TPV reports from a gpsd (`GpsdGps`); reconnects with jittered, capped backoff and so
  survives gpsd restarts.
- `replay`: an NMEA log file (`ReplayGps`) at the log's own pace times `speed`, optionally looped.
- `none`: no GPS.

The simulator is not a source of its own: `busfleet sim gps` (and the sim bus) writes NMEA to
a pty, and the agent reads it with `source = "serial"` and `device` = the pty's path, so the
simulation runs the production code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Protocol, cast

from onboard.errors import ConfigError
from onboard.gps.gpsd import GpsdError, watch_gpsd
from onboard.gps.serial_port import SerialGps
from protocols.nmea.decoder import Fix, NmeaDecoder

__all__ = [
    "GPS_SOURCES",
    "GpsSource",
    "GpsdGps",
    "OnFix",
    "ReplayGps",
    "SerialGps",
    "make_gps_source",
]

log = logging.getLogger("busfleet.onboard.gps")

GPS_SOURCES = ("serial", "gpsd", "replay", "none")
_CHUNK = 1 << 16

OnFix = Callable[[Fix, float], None]
"""`on_fix(fix, monotonic_at)`: called in the event loop for every epoch's fix."""


class GpsSource(Protocol):
    """What the agent needs of a GPS backend."""

    async def run(self) -> None:
        """Deliver fixes to `on_fix` until cancelled (a finished replay may return)."""
        ...

    @property
    def rejected(self) -> int:
        """Input thrown away: bad NMEA lines, or 0 where gpsd decodes for us."""
        ...


class GpsdGps:
    """Fixes from gpsd's TPV reports; reconnects forever with jittered, capped backoff."""

    def __init__(
        self,
        host: str,
        port: int,
        on_fix: OnFix,
        *,
        backoff_max_s: float = 10.0,
        backoff_min_s: float = 0.5,
    ) -> None:
        self.host = host
        self.port = port
        self.on_fix = on_fix
        self.backoff_max_s = backoff_max_s
        self.backoff_min_s = backoff_min_s
        self.connects = 0  # sessions that delivered at least one report
        self.fixes = 0

    @property
    def rejected(self) -> int:
        return 0  # gpsd decodes and filters NMEA itself; nothing reaches us to reject

    async def run(self) -> None:
        delay = self.backoff_min_s
        while True:
            before = self.fixes
            try:
                await self._session()
                reason = "watch ended"  # watch_gpsd raises when gpsd goes; kept for safety
            except (GpsdError, OSError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            # A session that delivered fixes was healthy (gpsd restarted, say): start the
            # backoff over. One that never did (nothing listening, a port that closes at once)
            # keeps growing it.
            if self.fixes > before:
                delay = self.backoff_min_s
            log.warning("gpsd %s:%d: %s; retry in %.1f s", self.host, self.port, reason, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_max_s)

    async def _session(self) -> None:
        """One connection, until gpsd goes away (GpsdError) or the connection fails."""
        # watch_gpsd is an async generator (annotated as an AsyncIterator): close it on the way
        # out so that its socket is closed now, not whenever the generator is collected.
        reports = cast(AsyncGenerator[Fix, None], watch_gpsd(self.host, self.port))
        first = True
        async with contextlib.aclosing(reports):
            async for fix in reports:
                if first:
                    first = False
                    self.connects += 1
                    log.info("gpsd %s:%d delivering fixes", self.host, self.port)
                self.fixes += 1
                self.on_fix(fix, time.monotonic())


class ReplayGps:
    """Fixes from an NMEA log (gpsd's .log format: `#` lines are comments), paced like the log.

    Each fix is handed over when as much time has passed since the first one as its receiver
    time says, divided by `speed` (`speed <= 0`: as fast as possible). Gaps longer than
    `max_gap_s` in the log are shortened to it, so a log with an hour's hole does not stall.
    With `retime`, fix times are moved so that each pass starts now (the agent stamps its
    records with fix time: a 2014 log would otherwise send 2014 records). With `loop`, the log
    starts over at its end with a fresh decoder; otherwise `run()` returns.
    """

    def __init__(
        self,
        path: str | Path,
        on_fix: OnFix,
        *,
        speed: float = 1.0,
        loop: bool = False,
        retime: bool = True,
        max_gap_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.path = Path(path)
        self.on_fix = on_fix
        self.speed = speed
        self.loop = loop
        self.retime = retime
        self.max_gap_s = max_gap_s
        self.clock = clock
        self.sleep = sleep
        self.passes = 0  # complete passes through the log
        self.fixes = 0
        self._rejected_before = 0  # rejected by the decoders of earlier passes
        self.decoder = NmeaDecoder()

    @property
    def rejected(self) -> int:
        return self._rejected_before + self.decoder.stats.rejected

    async def run(self) -> None:
        while True:
            before = self.fixes
            await self._one_pass()
            self.passes += 1
            if not self.loop:
                return
            # A fresh decoder per pass: its epoch logic must not see time jump backwards.
            self._rejected_before += self.decoder.stats.rejected
            self.decoder = NmeaDecoder()
            if self.fixes == before:
                # A log without a single fix would loop flat out: pause like a missing receiver.
                await self.sleep(1.0)

    async def _one_pass(self) -> None:
        pacer = _Pacer(self.speed, self.max_gap_s, self.clock, self.sleep)
        shift: timedelta | None = None
        stream: IO[bytes] = await asyncio.to_thread(self.path.open, "rb")
        rest = b""
        try:
            while True:
                # A big log on an SD card can take its time: read in a thread, in chunks.
                chunk = await asyncio.to_thread(stream.read, _CHUNK)
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop() if chunk else b""
                for line in lines:
                    if not line.startswith(b"#"):
                        self.decoder.receive_data(line + b"\n")
                # At the end, flush() closes the last epoch and hands back the oldest fix left.
                fix = self.decoder.next_fix() if chunk else self.decoder.flush()
                while fix is not None:
                    if fix.time is not None:
                        await pacer.wait(fix.time)
                        if self.retime:
                            if shift is None:
                                shift = datetime.now(UTC) - fix.time
                            fix = replace(fix, time=fix.time + shift)
                    self.fixes += 1
                    self.on_fix(fix, self.clock())
                    fix = self.decoder.next_fix()
                if not chunk:
                    return
        finally:
            stream.close()


class _Pacer:
    """Sleeps so that receiver times are replayed at `speed` times their own pace."""

    def __init__(
        self,
        speed: float,
        max_gap_s: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.speed = speed
        self.max_gap_s = max_gap_s
        self.clock = clock
        self.sleep = sleep
        self._prev: datetime | None = None
        self._due = 0.0  # monotonic time the previous fix was due

    async def wait(self, when: datetime) -> None:
        if self.speed <= 0:
            return
        if self._prev is None:
            self._prev, self._due = when, self.clock()
            return
        step = (when - self._prev).total_seconds()
        # Backwards (a stitched log) or a long hole: carry on at the next regular step.
        step = min(max(step, 0.0), self.max_gap_s)
        self._prev = when
        self._due += step / self.speed
        delay = self._due - self.clock()
        if delay > 0:
            await self.sleep(delay)
        elif delay < -1.0:
            self._due = self.clock()  # far behind (suspended machine): do not burst to catch up


def make_gps_source(
    source: str,
    *,
    device: str,
    baud: int,
    gpsd_host: str,
    gpsd_port: int,
    replay_path: str,
    on_fix: OnFix,
    replay_speed: float = 1.0,
    replay_loop: bool = True,
) -> GpsSource | None:
    """The backend named by `source` (one of GPS_SOURCES); None for "none".

    Raises ConfigError for an unknown source, or a replay without a readable file.
    """
    if source == "serial":
        return SerialGps(device, baud, on_fix)
    if source == "gpsd":
        return GpsdGps(gpsd_host, gpsd_port, on_fix)
    if source == "replay":
        if not replay_path:
            raise ConfigError("gps.source = 'replay' needs gps.replay_path", key="gps.replay_path")
        if not Path(replay_path).is_file():
            raise ConfigError(
                f"gps.replay_path {replay_path!r}: no such file", key="gps.replay_path"
            )
        return ReplayGps(replay_path, on_fix, speed=replay_speed, loop=replay_loop)
    if source == "none":
        return None
    raise ConfigError(
        f"gps.source {source!r} unknown (one of {', '.join(GPS_SOURCES)})", key="gps.source"
    )
