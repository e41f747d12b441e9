"""Loudness by time of day: agent.toml's `audio.volume = "06:00-22:00=100,22:00-06:00=50"`.

Pure: the local time is an argument. A window `HH:MM-HH:MM` is [start, end) and may cross
midnight; the first window that holds the time wins; outside every window the volume is 100 %.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time

from onboard.errors import ConfigError

__all__ = ["VolumeSchedule"]

_ENTRY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)=(\d{1,3})$")


@dataclass(frozen=True, slots=True)
class VolumeSchedule:
    windows: tuple[tuple[int, int, int], ...] = ()  # (start minute, end minute, percent)

    @classmethod
    def parse(cls, spec: str, key: str = "audio.volume") -> VolumeSchedule:
        """The schedule of a `volume` value; ConfigError saying which entry is wrong."""
        windows = []
        for entry in filter(None, (e.strip() for e in spec.split(","))):
            m = _ENTRY.match(entry.replace(" ", ""))
            if m is None or int(m.group(5)) > 100 or (m.group(3) == "24" and m.group(4) != "00"):
                raise ConfigError(
                    f"{key}: {entry!r} is not HH:MM-HH:MM=PERCENT (0 to 100)", key=key
                )
            h1, m1, h2, m2, pct = (int(g) for g in m.groups())
            windows.append((h1 * 60 + m1, h2 * 60 + m2, pct))
        return cls(tuple(windows))

    def percent_at(self, local: time) -> int:
        """The volume in percent at that local time of day."""
        minute = local.hour * 60 + local.minute
        for start, end, pct in self.windows:
            inside = (
                start == end
                or (start < end and start <= minute < end)
                or (start > end and (minute >= start or minute < end))
            )
            if inside:
                return pct
        return 100
