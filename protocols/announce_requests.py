"""Dispatchers' requests for live announcements from city hall (issue 17): part of
protocols/requests.py's `Request` union, kept here so that module stays small. Pure.

An announcement goes to each targeted bus as an `Announce` command (protocols/bus_commands.py)
with its own id and expiry; central/announcements.py has the rules.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from protocols.request_base import Records, RequestBase

__all__ = ["ANNOUNCE_REQUESTS", "AnnouncementStatus", "LiveAnnounce"]

Target = Annotated[str, msgspec.Meta(max_length=200)]  # all, a bus id, bus:B, group:G, route:R
Text = Annotated[str, msgspec.Meta(max_length=500)]  # the bus's limit (bus_commands.DriverText)
Id = Annotated[str, msgspec.Meta(max_length=64)]


class LiveAnnounce(RequestBase, tag="announce", frozen=True, kw_only=True):
    """Speak `de` (and `en`) and show it now on the buses `to` names; a bus that does not get
    it within `ttl_s` seconds (offline longer) never does: its command expires."""

    to: Annotated[list[Target], msgspec.Meta(min_length=1, max_length=1000)]
    de: Text
    en: Text = ""
    ttl_s: Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)] = 120.0


class AnnouncementStatus(Records, tag="announcement_status", frozen=True, kw_only=True):
    """Per targeted bus, where announcement `id` stands: sent, delivered (spoken and shown),
    failed or expired (the bus was away longer than its ttl)."""

    id: Id


ANNOUNCE_REQUESTS: tuple[type[RequestBase], ...] = (LiveAnnounce, AnnouncementStatus)
