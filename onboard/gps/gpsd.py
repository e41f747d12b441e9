"""gpsd as a GPS backend (`GpsdGps`), on a minimal asyncio client: `?WATCH` for JSON, yield
each TPV report as a `Fix`.

gpsd (TCP 2947) answers `?WATCH={"enable":true,"json":true}` with one JSON object per line:
VERSION, DEVICES, WATCH, then TPV (time-position-velocity) and SKY reports as the receiver
sends them. Only TPV carries a fix. Lines that are not JSON are skipped (gpsd never sends them,
a proxy in between might); an ERROR report or a closed connection raises `GpsdError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Self, cast

from onboard.errors import DeviceError
from onboard.gps.base import GpsSource, OnFix
from protocols.nmea.decoder import Fix

if TYPE_CHECKING:
    from onboard.gps.settings import GpsSection

log = logging.getLogger("busfleet.onboard.gps")

WATCH_COMMAND = b'?WATCH={"enable":true,"json":true}\n'
# SKY reports list every satellite; 64 KiB (asyncio's default) is ample, but say so.
LINE_LIMIT = 1 << 16


class GpsdError(DeviceError):
    """gpsd refused us, closed the connection or sent a line too long to be a report."""


def _number(report: Mapping[str, object], key: str) -> float | None:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def fix_from_tpv(report: Mapping[str, object]) -> Fix:
    """A gpsd TPV report as a `Fix` (speed m/s and track degrees, like our NMEA decoder)."""
    when = None
    time_text = report.get("time")
    if isinstance(time_text, str):
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(time_text.replace("Z", "+00:00"))
    mode = report.get("mode")
    alt = _number(report, "altMSL")
    return Fix(
        time=when,
        mode=mode if isinstance(mode, int) and not isinstance(mode, bool) else 0,
        lat=_number(report, "lat"),
        lon=_number(report, "lon"),
        speed=_number(report, "speed"),
        track=_number(report, "track"),
        alt_msl=alt if alt is not None else _number(report, "alt"),
    )


async def watch_gpsd(host: str, port: int, *, connect_timeout: float = 5.0) -> AsyncIterator[Fix]:
    """Connect to gpsd, ask for JSON reports and yield a `Fix` per TPV, until cancelled."""
    async with asyncio.timeout(connect_timeout):
        reader, writer = await asyncio.open_connection(host, port, limit=LINE_LIMIT)
    try:
        writer.write(WATCH_COMMAND)
        await writer.drain()
        while True:
            try:
                line = await reader.readline()
            except (asyncio.LimitOverrunError, ValueError) as exc:
                raise GpsdError(f"report longer than {LINE_LIMIT} bytes") from exc
            if not line:
                raise GpsdError("gpsd closed the connection")
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if not isinstance(report, dict):
                continue
            kind = report.get("class")
            if kind == "TPV":
                yield fix_from_tpv(report)
            elif kind == "ERROR":
                raise GpsdError(str(report.get("message", "error")))
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class GpsdGps(GpsSource):
    """Fixes from gpsd's TPV reports; reconnects forever (GpsSource's retry loop)."""

    def __init__(
        self,
        host: str,
        port: int,
        on_fix: OnFix,
        *,
        backoff_max_s: float = 10.0,
        backoff_min_s: float = 0.5,
    ) -> None:
        super().__init__(on_fix, backoff_max_s=backoff_max_s, backoff_min_s=backoff_min_s)
        self.host = host
        self.port = port
        self.connects = 0  # sessions that delivered at least one report

    @classmethod
    def from_config(cls, section: GpsSection, on_fix: OnFix) -> Self:
        return cls(section.gpsd_host, section.gpsd_port, on_fix)

    # rejected stays 0: gpsd decodes and filters NMEA itself; nothing reaches us to reject.

    def describe(self) -> str:
        return f"gpsd {self.host}:{self.port}"

    async def session(self) -> bool:
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
                self.deliver(fix, time.monotonic())
        raise GpsdError("watch ended")  # watch_gpsd raises when gpsd goes; kept for safety
