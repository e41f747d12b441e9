"""The GPS backends by name: the table agent.toml's `gps.source` chooses from.

Imported by onboard/config.py for the names alone: it loads no backend (pyserial is imported
only when `serial` is chosen). `none` is no source at all, not a backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from onboard.backends import load_backend

if TYPE_CHECKING:
    from onboard.gps.base import GpsSource, OnFix
    from onboard.gps.settings import GpsSection

__all__ = ["BACKENDS", "GPS_SOURCES", "NONE", "GpsSourceName", "make_gps_source", "open_gps"]

# The names as a type, for code that spells one; tests/test_backends.py holds it to the keys.
GpsSourceName = Literal["serial", "gpsd", "replay"]

# The simulator is not a backend of its own: `busfleet sim gps` writes NMEA to a pty, and the
# agent reads it with `serial`, so the simulation runs the production code path.
BACKENDS: Final[dict[str, tuple[str, str]]] = {
    "serial": ("onboard.gps.serial_port", "SerialGps"),  # NMEA from a receiver, our decoder
    "gpsd": ("onboard.gps.gpsd", "GpsdGps"),  # TPV reports from a gpsd
    "replay": ("onboard.gps.replay", "ReplayGps"),  # an NMEA log at its own pace
}
NONE: Final = "none"
GPS_SOURCES: Final = (*BACKENDS, NONE)  # what gps.source accepts


def open_gps(section: GpsSection, on_fix: OnFix) -> GpsSource | None:
    """The backend `section.source` names, built from the section; None for "none".

    Raises BackendError (a ConfigError) for an unknown name and ConfigError for a
    backend its settings cannot build.
    """
    if section.source == NONE:
        return None
    from onboard.gps.base import GpsSource  # the base only; the backend's module stays lazy

    # type-abstract: the base is abstract on purpose; the table names concrete subclasses.
    cls = load_backend("gps", BACKENDS, section.source, GpsSource, key="gps.source")  # type: ignore[type-abstract]
    return cls.from_config(section, on_fix)


def make_gps_source(
    source: str,
    *,
    device: str,
    baud: int,
    gpsd_host: str,
    gpsd_port: int,
    replay_path: str | Path,
    on_fix: OnFix,
    replay_speed: float = 1.0,
    replay_loop: bool = True,
) -> GpsSource | None:
    """`open_gps` from keyword settings (tools and tests without an agent.toml)."""
    from onboard.gps.settings import GpsSection

    section = GpsSection(
        source=source,
        device=device,
        baud=baud,
        gpsd_host=gpsd_host,
        gpsd_port=gpsd_port,
        replay_path=str(replay_path),
        replay_speed=replay_speed,
        replay_loop=replay_loop,
    )
    return open_gps(section, on_fix)
