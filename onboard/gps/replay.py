"""GPS from an NMEA log (gpsd's .log format), replayed at the log's own pace (`replay`).

For bench tests, demos and debugging a route: the same decoder as a receiver on a serial port,
fed from a file read in chunks in a thread (a big log on an SD card can take its time).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

from onboard.errors import ConfigError
from onboard.gps.base import GpsSource, OnFix
from protocols.nmea.decoder import NmeaDecoder

if TYPE_CHECKING:
    from onboard.gps.settings import GpsSection

__all__ = ["ReplayGps"]

_CHUNK = 1 << 16


class ReplayGps(GpsSource):
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
        super().__init__(on_fix)
        self.path = Path(path)
        self.speed = speed
        self.loop = loop
        self.retime = retime
        self.max_gap_s = max_gap_s
        self.clock = clock
        self.sleep = sleep
        self.passes = 0  # complete passes through the log
        self._rejected_before = 0  # rejected by the decoders of earlier passes
        self.decoder = NmeaDecoder()

    @property
    def rejected(self) -> int:
        return self._rejected_before + self.decoder.stats.rejected

    @classmethod
    def from_config(cls, section: GpsSection, on_fix: OnFix) -> Self:
        path = section.replay_path
        if not path:
            raise ConfigError("gps.source = 'replay' needs gps.replay_path", key="gps.replay_path")
        if not Path(path).is_file():
            raise ConfigError(f"gps.replay_path {path!r}: no such file", key="gps.replay_path")
        return cls(path, on_fix, speed=section.replay_speed, loop=section.replay_loop)

    def describe(self) -> str:
        return f"replay of {self.path}"

    async def session(self) -> bool:
        """One pass through the log; done unless looping. A pass without a single fix comes
        back to the retry loop as a failure, so that such a log does not loop flat out."""
        await self._one_pass()
        self.passes += 1
        if not self.loop:
            return True
        # A fresh decoder per pass: its epoch logic must not see time jump backwards.
        self._rejected_before += self.decoder.stats.rejected
        self.decoder = NmeaDecoder()
        return False

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
                    self.deliver(fix, self.clock())
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
