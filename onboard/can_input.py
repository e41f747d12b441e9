"""The vehicle CAN bus (bus-FMS / J1939) via python-can: socketcan on a bus, virtual in tests."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import can

from protocols.j1939 import J1939Decoder
from protocols.vehicle import VehicleEvent, VehicleState, apply

log = logging.getLogger("busfleet.onboard.can")


class CanInput:
    """Keeps the latest VehicleState from the bus and reports changes as events."""

    def __init__(
        self,
        interface: str,
        channel: str,
        *,
        bitrate: int = 250_000,
        on_event: Callable[[VehicleEvent], None] | None = None,
    ) -> None:
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.on_event = on_event
        self.decoder = J1939Decoder()
        self.state = VehicleState()
        self.frames = 0

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._read_bus()
            except (can.CanError, OSError) as exc:
                log.warning(
                    "can %s:%s unavailable: %s; retry in %.1f s",
                    self.interface,
                    self.channel,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 10.0)

    async def _read_bus(self) -> None:
        if self.interface == "socketcan":
            bus = can.Bus(interface="socketcan", channel=self.channel, bitrate=self.bitrate)
        else:
            bus = can.Bus(interface=self.interface, channel=self.channel)
        reader = can.AsyncBufferedReader()
        notifier = can.Notifier(bus, [reader], loop=asyncio.get_running_loop())
        log.info("can %s:%s open", self.interface, self.channel)
        try:
            async for msg in reader:
                self.handle(msg.arbitration_id, bytes(msg.data), msg.timestamp)
        finally:
            notifier.stop()
            bus.shutdown()

    def handle(self, can_id: int, data: bytes, t: float) -> None:
        self.frames += 1
        for decoded in self.decoder.decode(can_id, data, t):
            self.state, events = apply(self.state, decoded)
            if self.on_event is not None:
                for event in events:
                    self.on_event(event)
