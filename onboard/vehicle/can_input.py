"""The vehicle CAN bus (bus-FMS / J1939) via python-can: socketcan on a bus, virtual in tests."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import can

from protocols.j1939.candump import parse_candump_line
from protocols.j1939.decode import J1939Decoder
from protocols.j1939.vehicle import VehicleEvent, VehicleState, apply

log = logging.getLogger("busfleet.onboard.can")

DRAIN_EVERY_S = 0.05


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

    async def _replay(self) -> None:
        """A candump log played at its own pace, in a loop (bench tests, demos, debugging)."""
        path = Path(self.channel)
        text = await asyncio.to_thread(path.read_text)
        frames = [f for f in map(parse_candump_line, text.splitlines()) if f]
        if not frames:
            raise OSError(f"no frames in candump log {path}")
        log.info("can replay of %s: %d frames", path, len(frames))
        while True:
            start, first = time.monotonic(), frames[0][0]
            for t, _iface, can_id, data in frames:
                delay = (t - first) - (time.monotonic() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
                self.handle(can_id, data, time.time())
            await asyncio.sleep(0.1)

    async def _read_bus(self) -> None:
        if self.interface == "replay":
            await self._replay()
            return
        if self.interface == "socketcan":
            bus = can.Bus(interface="socketcan", channel=self.channel, bitrate=self.bitrate)
        else:
            bus = can.Bus(interface=self.interface, channel=self.channel)
        # The notifier's thread fills a thread-safe queue; the event loop drains it in batches.
        # A busy bus-FMS sends ~2,000 frames/s: waking the loop for each frame would cost more
        # than decoding them (the agent's budget is 10 % of a core).
        reader = can.BufferedReader()
        notifier = can.Notifier(bus, [reader])
        log.info("can %s:%s open", self.interface, self.channel)
        try:
            while True:
                await asyncio.sleep(DRAIN_EVERY_S)
                if notifier.exception is not None:
                    raise can.CanError(f"receive failed: {notifier.exception}")
                while (msg := reader.get_message(timeout=0)) is not None:
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
