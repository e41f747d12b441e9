"""The dashboard's live announcement from city hall (issue 17): key `v` opens a form (the
texts, the targets, how long a bus may be away), and the app sends the `LiveAnnounce` it
makes, as `busfleet central announce` does; the answer names the buses (a notification).
"""

from __future__ import annotations

from collections.abc import Iterable

from central.dashboard.screens.form import Field, FormScreen
from protocols.announce_requests import LiveAnnounce

__all__ = ["DONE", "announce_form", "announce_request"]

DONE = "announcement {announcement} to {buses} buses"
TARGETS = "all, B, group:G, route:R (commas)"


def announce_form(buses: Iterable[str], targets: str = "all") -> FormScreen:
    """The form; its labels fit an 80-column terminal."""
    fields = [
        Field("de", "German text (spoken first, required)"),
        Field("en", "English text"),
        Field("to", f"To: {TARGETS}", targets, suggestions=sorted(buses)),
        Field("ttl_s", "A bus away longer (s) never gets it", "120"),
    ]
    note = "Spoken and shown at once on every bus named."
    return FormScreen("Live announcement", fields, note=note)


def announce_request(values: dict[str, str]) -> LiveAnnounce | str:
    """The request the form's values make, or why there is none (central checks the rest)."""
    to = [t.strip() for t in values.get("to", "").split(",") if t.strip()]
    if not values.get("de", "").strip():
        return "a live announcement needs its German text"
    if not to:
        return f"name its buses: {TARGETS}"
    try:
        ttl_s = float(values.get("ttl_s") or 120)
    except ValueError:
        return "the time a bus may be away is a number of seconds"
    if not 0 < ttl_s <= 3600:
        return "the time a bus may be away is 1 to 3600 seconds"
    return LiveAnnounce(to=to, de=values["de"], en=values.get("en", ""), ttl_s=ttl_s)
