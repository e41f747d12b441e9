"""The vehicle CAN bus (bus-FMS / J1939): frames from a backend, decoded into the vehicle state.

The backend (socketcan on a bus, virtual in tests, replay of a candump log) comes from the
table in onboard/vehicle/backends.py; `CanInput.run()` is the one retry loop around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from onboard.backoff import Backoff
from onboard.errors import RemoteError
from onboard.vehicle.backends import frame_source
from protocols.j1939.decode import J1939Decoder
from protocols.j1939.tracker import VehicleTracker
from protocols.j1939.vehicle import VehicleEvent, VehicleState

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
        # Chosen from the table (onboard/vehicle/backends.py): BackendError if unknown.
        self.source = frame_source(interface, channel, bitrate=bitrate)
        self.on_event = on_event
        # Decoder + state, with the shortcut for repeated frames (protocols/j1939/tracker.py).
        self.tracker = VehicleTracker()
        self.frames = 0

    @property
    def state(self) -> VehicleState:
        """The latest vehicle state."""
        return self.tracker.state

    @property
    def decoder(self) -> J1939Decoder:
        """The J1939 decoder (its `stats` count every frame, repeated ones included)."""
        return self.tracker.decoder

    async def run(self) -> None:
        """The one retry loop over the backend's sessions, until cancelled."""
        retries = Backoff(10.0, first_s=0.5)
        while True:
            frames = self.frames
            try:
                await self.source.session(self.handle)
                reason = "session ended"
            except (RemoteError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            if self.frames > frames:
                retries.reset()  # it was delivering: the next failure waits little again
            log.warning(
                "can %s:%s unavailable: %s; retry within %.1f s",
                self.interface, self.channel, reason, retries.bound(),
            )  # fmt: skip
            await retries.wait()

    def handle(self, can_id: int, data: bytes, t: float) -> None:
        self.frames += 1
        events = self.tracker.feed(can_id, data, t)
        if events and self.on_event is not None:
            for event in events:
                self.on_event(event)
