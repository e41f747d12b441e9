"""GPS from NMEA on a serial port (pyserial), decoded by the sans-IO decoder in protocols.

The port is read without a thread: pyserial opens it non-blocking and the event loop watches
its file descriptor. An unplugged receiver (read error, port gone) closes the port; the retry
loop of `GpsSource` opens it again with the onboard backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, ClassVar, Self

import serial

from onboard.errors import RemoteError
from onboard.gps.base import GpsSource, OnFix
from protocols.nmea.decoder import NmeaDecoder

if TYPE_CHECKING:
    from onboard.gps.settings import GpsSection

log = logging.getLogger("busfleet.onboard.gps")


class SerialGps(GpsSource):
    """Feeds fixes from a serial NMEA receiver to `on_fix`; counts what it rejected."""

    # pyserial's SerialException is an IOError; named so that the intent shows.
    retry_on: ClassVar[tuple[type[BaseException], ...]] = (
        serial.SerialException,
        RemoteError,
        OSError,
    )

    def __init__(
        self, device: str, baud: int, on_fix: OnFix, *, backoff_max_s: float = 10.0
    ) -> None:
        super().__init__(on_fix, backoff_max_s=backoff_max_s, backoff_min_s=0.5)
        self.device = device
        self.baud = baud
        self.decoder = NmeaDecoder()
        self.opened = 0  # how often the port was (re)opened

    @classmethod
    def from_config(cls, section: GpsSection, on_fix: OnFix) -> Self:
        return cls(section.device, section.baud, on_fix)

    @property
    def rejected(self) -> int:
        return int(self.decoder.stats.rejected)

    def describe(self) -> str:
        return f"port {self.device}"

    async def session(self) -> bool:
        """Read the port until it is gone (unplugged: a SerialException or OSError)."""
        await self._read_until_gone()
        return False

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
            self.deliver(fix, now)
