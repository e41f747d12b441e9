"""update.maintenance_window: "HH:MM-HH:MM" in local time, possibly across midnight. Pure."""

from __future__ import annotations

import re
import time

__all__ = ["in_window", "parse_window"]

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def parse_window(text: str) -> tuple[int, int] | None:
    """(start, end) in minutes of the day; None for "" (any time); ValueError if unreadable."""
    text = text.strip()
    if not text:
        return None
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a window like 01:00-04:30")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return h1 * 60 + m1, h2 * 60 + m2


def in_window(text: str, now: time.struct_time) -> bool:
    """Whether `now` (local time) is inside the window; always for an empty one. A window
    whose end is before its start runs across midnight (22:00-05:00)."""
    window = parse_window(text)
    if window is None:
        return True
    start, end = window
    minute = now.tm_hour * 60 + now.tm_min
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end
