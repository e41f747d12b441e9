"""GPS on the bus: backends that deliver fixes, and the judge of those fixes.

Rules of this room:
- backends come from one table, `backends.BACKENDS` (serial, gpsd, replay; python-can's
  habit): agent.toml's `gps.source` names one, its module is imported only when chosen, an
  unknown name is a BackendError (a ConfigError);
- every backend is a `base.GpsSource`, whose `run()` is the one retry loop (onboard/backoff.py);
  a backend only says how to run one session;
- `quality` is pure: it judges fixes (stale, jumps, HDOP) and dead-reckons; sources never do.
The face re-exports the table, the base and the judge; no backend (pyserial stays unloaded).
"""

from onboard.gps.backends import BACKENDS, GPS_SOURCES, open_gps
from onboard.gps.base import GpsSource, OnFix
from onboard.gps.quality import GpsQuality, QualityLimits

__all__ = [
    "BACKENDS",
    "GPS_SOURCES",
    "GpsQuality",
    "GpsSource",
    "OnFix",
    "QualityLimits",
    "open_gps",
]
