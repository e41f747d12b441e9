"""GPS from NMEA on a serial port (pyserial), decoded by the sans-IO decoder in protocols.

The port is read without a thread: pyserial opens it non-blocking and the event loop watches
its file descriptor. An unplugged receiver (read error, port gone) closes the port; the loop
opens it again with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import serial

from protocols.nmea.decoder import Fix, NmeaDecoder

log = logging.getLogger("busfleet.onboard.gps")


class SerialGps:
    """Feeds fixes from a serial NMEA receiver to `on_fix`; counts what it rejected."""

    def __init__(
        self,
        device: str,
        baud: int,
        on_fix: Callable[[Fix, float], None],
        *,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.device = device
        self.baud = baud
        self.on_fix = on_fix
        self.backoff_max_s = backoff_max_s
        self.decoder = NmeaDecoder()
        self.opened = 0  # how often the port was (re)opened

    @property
    def rejected(self) -> int:
        return int(self.decoder.stats.rejected)

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._read_until_gone()
                delay = 0.5
            except (serial.SerialException, OSError) as exc:
                log.warning("gps port %s unavailable: %s; retry in %.1f s", self.device, exc, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_max_s)

    async def _read_until_gone(self) -> None:
        port = serial.Serial(self.device, self.baud, timeout=0)
        self.opened += 1
        log.info("gps port %s open at %d baud", self.device, self.baud)
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                data = port.read(4096)
            except (serial.SerialException, OSError) as exc:
                if not gone.done():
                    gone.set_exception(exc)
                return
            if data:
                self._feed(data)

        loop.add_reader(port.fileno(), readable)
        try:
            await gone
        finally:
            loop.remove_reader(port.fileno())
            port.close()

    def _feed(self, data: bytes) -> None:
        self.decoder.receive_data(data)
        now = time.monotonic()
        while (fix := self.decoder.next_fix()) is not None:
            self.on_fix(fix, now)
