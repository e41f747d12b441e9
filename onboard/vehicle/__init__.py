"""The vehicle's CAN bus (bus-FMS / J1939) on the bus: backends that deliver frames, decoded.

Rules of this room:
- backends come from one table, `backends.BACKENDS` (socketcan, virtual, replay): agent.toml's
  `can.interface` names one; python-can is imported only when one is opened; an unknown name
  is a BackendError (a ConfigError). A replay is a backend like the others;
- `can_input.CanInput.run()` is the one retry loop around a backend's sessions
  (onboard/backoff.py); python-can's errors are wrapped in `frames.CanBusError`;
- decoding is protocols/j1939's (sans-IO); this room only moves frames.
"""

from onboard.vehicle.backends import BACKENDS, CAN_INTERFACES, frame_source
from onboard.vehicle.can_input import CanInput
from onboard.vehicle.frames import CanBusError, FrameSource

__all__ = ["BACKENDS", "CAN_INTERFACES", "CanBusError", "CanInput", "FrameSource", "frame_source"]
