"""The CAN backends by name: the table agent.toml's `can.interface` chooses from.

Imported by onboard/config.py for the names alone: it loads no backend (python-can is imported
only when one is opened). `none` is no CAN input at all, not a backend.
"""

from __future__ import annotations

from typing import Final, Literal

from onboard.backends import load_backend
from onboard.vehicle.frames import FrameSource

__all__ = ["BACKENDS", "CAN_INTERFACES", "NONE", "CanInterfaceName", "frame_source"]

# The names as a type, for code that spells one; tests/test_backends.py holds it to the keys.
CanInterfaceName = Literal["socketcan", "virtual", "replay"]

BACKENDS: Final[dict[str, tuple[str, str]]] = {
    "socketcan": ("onboard.vehicle.pycan", "SocketcanFrames"),  # a real bus
    "virtual": ("onboard.vehicle.pycan", "VirtualFrames"),  # tests, the simulator
    "replay": ("onboard.vehicle.replay", "ReplayFrames"),  # a candump log (channel = its path)
}
NONE: Final = "none"
CAN_INTERFACES: Final = (*BACKENDS, NONE)  # what can.interface accepts


def frame_source(interface: str, channel: str, *, bitrate: int = 250_000) -> FrameSource:
    """The backend `interface` names; BackendError (a ConfigError) if there is none."""
    # type-abstract: the base is abstract on purpose; the table names concrete subclasses.
    cls = load_backend("can", BACKENDS, interface, FrameSource, key="can.interface")  # type: ignore[type-abstract]
    return cls(channel, bitrate=bitrate)
