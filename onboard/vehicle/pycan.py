"""CAN through python-can: `socketcan` on a bus, `virtual` in tests and the simulator.

The notifier's thread fills a thread-safe queue; the event loop drains it in batches. A busy
bus-FMS sends ~2,000 frames/s: waking the loop for each frame would cost more than decoding
them (the agent's budget is 10 % of a core).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import can

from onboard.vehicle.frames import CanBusError, FrameHandler, FrameSource

__all__ = ["PythonCanFrames", "SocketcanFrames", "VirtualFrames"]

log = logging.getLogger("busfleet.onboard.can")

DRAIN_EVERY_S = 0.05


class PythonCanFrames(FrameSource):
    """Frames from a python-can bus of interface `interface`."""

    interface = ""

    def bus_kwargs(self) -> dict[str, Any]:
        """What `can.Bus` needs besides the interface and channel."""
        return {}

    async def session(self, handle: FrameHandler) -> None:
        try:
            bus = can.Bus(interface=self.interface, channel=self.channel, **self.bus_kwargs())
        except can.CanError as exc:
            raise CanBusError(f"cannot open {self.interface}:{self.channel}: {exc}") from exc
        reader = can.BufferedReader()
        notifier = can.Notifier(bus, [reader])
        log.info("can %s:%s open", self.interface, self.channel)
        try:
            while True:
                await asyncio.sleep(DRAIN_EVERY_S)
                if notifier.exception is not None:
                    raise CanBusError(f"receive failed: {notifier.exception}")
                while (msg := reader.get_message(timeout=0)) is not None:
                    handle(msg.arbitration_id, bytes(msg.data), msg.timestamp)
        finally:
            notifier.stop()
            bus.shutdown()


class SocketcanFrames(PythonCanFrames):
    """A real bus through Linux SocketCAN (can0), at the configured bitrate."""

    interface = "socketcan"

    def bus_kwargs(self) -> dict[str, Any]:
        return {"bitrate": self.bitrate}


class VirtualFrames(PythonCanFrames):
    """python-can's in-process virtual bus: the simulator and tests send on the same channel."""

    interface = "virtual"
