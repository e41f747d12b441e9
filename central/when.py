"""When a dispatcher means, typed as text: one parser for the CLI and the dashboard.

"+90s", "+30m", "+2h", "+1d" from now; "HH:MM" the next time the clock here shows it (today,
or tomorrow if it has passed); or ISO 8601 (local time of city hall unless it has an offset).
"""

from __future__ import annotations

import datetime as dt
import math
import re

__all__ = ["MAX_AHEAD_S", "UNITS", "parse_when"]

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_AHEAD_S = 366 * 86400.0  # "+N" reaches at most a year ahead
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")


def parse_when(text: str, now: float) -> float:
    """The time `text` names (see the module doc); ValueError says what is allowed."""
    text = text.strip()
    if text.startswith("+") and text[-1:] in UNITS:
        try:
            ahead = float(text[1:-1]) * UNITS[text[-1]]
        except ValueError:
            ahead = math.nan
        if 0 <= ahead <= MAX_AHEAD_S:  # never NaN, inf or back in time ("+-5m")
            return now + ahead
    if m := _HHMM.fullmatch(text):
        hour, minute = int(m[1]), int(m[2])
        if hour < 24 and minute < 60:
            today = dt.datetime.fromtimestamp(now).replace(
                hour=hour, minute=minute, second=0, microsecond=0
            )
            when = today if today.timestamp() >= now else today + dt.timedelta(days=1)
            return when.timestamp()
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (HH:MM, +30m, +2h, +1d or ISO 8601)") from None
    if when.tzinfo is None:
        when = when.astimezone()  # the local time of city hall
    return when.timestamp()
