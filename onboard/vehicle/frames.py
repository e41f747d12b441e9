"""What every CAN backend is: a source of (can_id, data, t) frames for one session.

A backend opens its bus (or log) in `session()`, hands each frame to `handle` and returns or
raises when the bus goes; `CanInput.run()` (onboard/vehicle/can_input.py) is the one retry loop
around sessions for all of them. python-can's own exceptions are wrapped in `CanBusError`
where they leave a backend, so the loop retries the device's failures and nothing else.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from onboard.errors import DeviceError

__all__ = ["CanBusError", "FrameHandler", "FrameSource"]

FrameHandler = Callable[[int, bytes, float], None]  # handle(can_id, data, t)


class CanBusError(DeviceError):
    """The CAN interface failed (python-can's CanError, a notifier thread that died...)."""


class FrameSource(abc.ABC):
    """A CAN backend: `channel` is the interface (can0) or, for a replay, the log's path."""

    def __init__(self, channel: str, *, bitrate: int = 250_000) -> None:
        self.channel = channel
        self.bitrate = bitrate

    @abc.abstractmethod
    async def session(self, handle: FrameHandler) -> None:
        """Deliver frames until the bus goes (CanBusError, OSError) or cancelled."""
