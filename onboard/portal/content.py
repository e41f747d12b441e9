"""What the portal shows about the bus: the agent's provider hands it over, local data only.

Everything here comes from the bus itself (its assignment, its journey, messages and ads it
already holds), so the pages work with the uplink down. The portal calls the provider on each
page view; the provider must be cheap and must not block (no I/O).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocols.schemas import DesiredState


@dataclass(frozen=True, slots=True)
class Stop:
    name: str
    expected: float | None = None  # unix seconds; None when the bus cannot predict it


@dataclass(frozen=True, slots=True)
class Announcement:
    text_de: str
    text_en: str = ""  # empty: the German text is shown to everyone

    def text(self, lang: str) -> str:
        return self.text_en if lang == "en" and self.text_en else self.text_de


@dataclass(frozen=True, slots=True)
class AdSlot:
    """One ad on the status page; `image` must be a URL the bus serves itself (no uplink)."""

    title: str
    text: str = ""
    image: str = ""


@dataclass(frozen=True, slots=True)
class PortalContent:
    line: str = ""  # the route's short name, as on the front sign
    destination: str = ""
    next_stops: tuple[Stop, ...] = ()
    announcements: tuple[Announcement, ...] = ()
    ad: AdSlot | None = None


ContentProvider = Callable[[], PortalContent]


def no_content() -> PortalContent:
    return PortalContent()


def content_from_state(
    applied: DesiredState | None, announcements: Sequence[Announcement], now: float
) -> PortalContent:
    """What the agent itself knows: its assignment, central's passenger messages valid now
    (checked against the bus's clock, so they expire offline too) and announcements."""
    messages: list[Announcement] = []
    line = ""
    if applied is not None:
        if applied.assignment is not None:
            line = applied.assignment.route_id or ""
        for m in sorted(applied.messages, key=lambda m: -m.priority):
            if (m.valid_from is None or m.valid_from <= now) and (
                m.valid_to is None or now < m.valid_to
            ):
                messages.append(Announcement(m.text_de, m.text_en))
    messages += announcements[-3:]
    return PortalContent(line=line, announcements=tuple(messages[:5]))
