"""The journey core's state as the portal shows it: line, destination, stops, the diversion.

The translation lives here, beside the portal's content, so that the journey core
(onboard/journey/) imports no presentation: it hands out its own `StopAhead`s and `Detour`.
"""

from __future__ import annotations

import dataclasses

from onboard.journey.diversion import Detour
from onboard.journey.runtime import JourneyRuntime
from onboard.portal.content import Announcement, PortalContent, Stop

__all__ = ["MAX_PORTAL_STOPS", "with_journey"]

MAX_PORTAL_STOPS = 8
DIVERSION_DE, DIVERSION_EN = "Umleitung", "Diversion"
SKIPPED_DE, SKIPPED_EN = "entfällt", "not served"  # as the display pages say it


def with_journey(base: PortalContent, journey: JourneyRuntime) -> PortalContent:
    """The portal's content with the journey: line and destination from the timetable,
    the next stops (skipped ones named as such) and the diversion notice first among
    the announcements, in German and English."""
    state, ahead = journey.state, journey.stops_ahead()
    if state is None or ahead is None:
        return base
    stops = tuple(
        Stop(f"{s.name} ({SKIPPED_DE} / {SKIPPED_EN})" if s.skipped else s.name,
             None if s.skipped else s.expected)
        for s in ahead[:MAX_PORTAL_STOPS]
    )  # fmt: skip
    news = base.announcements
    if journey.detour is not None:
        news = (_notice(journey.detour), *news)
    return dataclasses.replace(
        base,
        line=state.route_short_name or state.route_id or base.line,
        destination=state.headsign or base.destination,
        next_stops=stops,
        announcements=news,
    )


def _notice(detour: Detour) -> Announcement:
    names = ", ".join(s.name for s in detour.skipped)
    de = [d.notice_de.strip() or d.notice_en.strip() for d in detour.diversions]
    en = [d.notice_en.strip() or d.notice_de.strip() for d in detour.diversions]
    text_de = " ".join(filter(None, [DIVERSION_DE + ":", *de]))
    text_en = " ".join(filter(None, [DIVERSION_EN + ":", *en]))
    if names:
        text_de += f" {SKIPPED_DE.capitalize()}: {names}."
        text_en += f" {SKIPPED_EN.capitalize()}: {names}."
    return Announcement(text_de, text_en)
