"""The [gps] section of agent.toml: which backend, and the quality gate's limits.

It lives in the GPS room so that the backends (backends.py, base.py, ...) can name their
settings without importing onboard/config.py, which imports the backend table for its names.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GpsSection"]


@dataclass(frozen=True, slots=True)
class GpsSection:
    # onboard/gps/backends.py: serial | gpsd | replay, or none (sim = serial on the sim's pty)
    source: str = "serial"
    device: str = "/dev/ttyUSB0"
    baud: int = 9600
    gpsd_host: str = "127.0.0.1"
    gpsd_port: int = 2947
    replay_path: str = ""  # an NMEA log, for source = replay
    replay_speed: float = 1.0  # <= 0: as fast as possible
    replay_loop: bool = True
    stale_after_s: float = 3.0  # no good fix for this long: GPS lost, dead reckoning from CAN
    max_hdop: float = 10.0  # worse fixes are rejected
    max_speed_mps: float = 60.0  # faster implied movement between fixes is a jump, rejected
    dead_reckon_max_s: float = 120.0  # dead reckoning stops after this long
