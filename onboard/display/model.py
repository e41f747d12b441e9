"""What the passenger display shows, as a pure function of the bus's state and the clock.

The pages in the bus only render a `DisplayState`; every decision (which announcements are
valid now, how many stops fit, which ad may be shown) is made here, so it can be tested with
hand-made inputs and keeps working offline: message validity is checked against the bus's own
clock, so an announcement expires on time even when the uplink is down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from protocols.schemas import Assignment, DesiredState, PassengerMessage

if TYPE_CHECKING:  # only for the adapter's signature: the display runs without a tracker
    from onboard.journey.states import JourneyState

MAX_STOPS = 5  # next stops on the landscape page; the strip shows the first two
MAX_ANNOUNCEMENTS = 3
MAX_TEXT = 500  # characters of an announcement; central should never send more


@dataclass(frozen=True, slots=True)
class NextStop:
    stop_id: str
    name: str
    expected: float | None  # unix seconds; None when the bus cannot predict it
    skipped: bool = False  # the bus will not call here (diversion, no stop request...)


@dataclass(frozen=True, slots=True)
class JourneyView:
    """The display's view of the journey: what any journey tracker has to provide."""

    line: str  # the route's short name, as on the bus's front sign
    destination: str  # the trip's headsign
    next_stops: tuple[NextStop, ...] = ()
    delay_s: float | None = None  # positive: late
    on_route: bool = True
    at_stop: bool = False  # standing at next_stops[0]: the pages say "this stop"


@dataclass(frozen=True, slots=True)
class Announcement:
    id: str
    text_de: str
    text_en: str  # empty: the page shows the German text in English too
    priority: int
    valid_to: float | None  # the page also hides it at this time if the agent goes quiet


@dataclass(frozen=True, slots=True)
class LiveBanner:
    """A live announcement from city hall (issue 17), shown big while it is spoken and a while
    after (`until`, the bus's clock: `live_until`); the pages hide it at `until` too."""

    id: str
    text_de: str
    text_en: str  # empty: the German text in English too
    until: float


LIVE_MIN_S = 30.0  # a live announcement stays at least this long on the screens
LIVE_CHARS_PER_S = 12.0  # speech: espeak-ng's default 175 words a minute is about 14
LIVE_MARGIN_S = 10.0  # after the speech ends, to finish reading


def live_until(start: float, text_de: str, text_en: str) -> float:
    """When a live announcement shown at `start` goes: its speech's length (both languages,
    estimated from the text) and a margin, at least LIVE_MIN_S."""
    speech_s = (len(text_de) + len(text_en)) / LIVE_CHARS_PER_S
    return start + max(LIVE_MIN_S, speech_s + LIVE_MARGIN_S)


@dataclass(frozen=True, slots=True)
class AdSlot:
    item_id: str
    url: str  # a local path on the agent ("/media/..."): the pages never load remote content


@dataclass(frozen=True, slots=True)
class DisplayState:
    """Everything a page shows except the clock, which comes from the browser."""

    line: str = ""
    destination: str = ""
    next_stops: tuple[NextStop, ...] = ()
    delay_s: float | None = None
    on_route: bool = True
    at_stop: bool = False
    stop_requested: bool = False
    announcements: tuple[Announcement, ...] = ()
    diversion: str | None = None
    ad: AdSlot | None = None
    live: LiveBanner | None = None  # a live announcement now (issue 17)
    online: bool = False  # the uplink to city hall; the pages work the same without it
    # What the pages show it in (`display.language`), alternating; a kiosk URL's ?lang= wins.
    languages: tuple[str, ...] = ("de",)
    cycle_s: float = 8.0


def message_valid(message: PassengerMessage, now: float) -> bool:
    """Whether a message is shown at `now`: valid_from <= now < valid_to, open ends allowed."""
    if message.valid_from is not None and now < message.valid_from:
        return False
    return message.valid_to is None or now < message.valid_to


def announcements(messages: Iterable[PassengerMessage], now: float) -> tuple[Announcement, ...]:
    """The messages valid at `now`, most important first, at most MAX_ANNOUNCEMENTS."""
    shown = [
        m for m in messages if message_valid(m, now) and (m.text_de.strip() or m.text_en.strip())
    ]
    # Stable for equal priorities: the one that started first stays on top, then by id, so
    # the order does not flicker between updates.
    shown.sort(key=lambda m: (-m.priority, m.valid_from or 0.0, m.id))
    return tuple(
        Announcement(
            id=m.id,
            text_de=clip(m.text_de or m.text_en),
            text_en=clip(m.text_en),
            priority=m.priority,
            valid_to=m.valid_to,
        )
        for m in shown[:MAX_ANNOUNCEMENTS]
    )


def local_ad(ad: AdSlot | None) -> AdSlot | None:
    """The ad if its url is a path on the agent; anything else (another host, a scheme,
    a protocol-relative `//host`) is refused, so a page never depends on the uplink."""
    if ad is None or not ad.url.startswith("/") or ad.url.startswith("//") or "\\" in ad.url:
        return None
    return ad


def display_state(
    journey: JourneyView | None,
    messages: Sequence[PassengerMessage],
    now: float,
    *,
    fallback_line: str = "",
    fallback_destination: str = "",
    stop_requested: bool = False,
    online: bool = False,
    diversion: str | None = None,
    ad: AdSlot | None = None,
    live: LiveBanner | None = None,
    max_stops: int = MAX_STOPS,
    languages: tuple[str, ...] = ("de",),
    cycle_s: float = 8.0,
) -> DisplayState:
    """The state the pages show at `now` (unix seconds, the bus's clock).

    Without a journey (no tracker, no GPS yet) line and destination come from the fallbacks,
    usually the assignment, and the stop list is empty.
    """
    line, destination = fallback_line, fallback_destination
    stops: tuple[NextStop, ...] = ()
    delay_s: float | None = None
    on_route, at_stop = True, False
    if journey is not None:
        line = journey.line or fallback_line
        destination = journey.destination or fallback_destination
        stops = journey.next_stops[:max_stops]
        delay_s = journey.delay_s
        on_route = journey.on_route
        at_stop = journey.at_stop and bool(stops)
    diversion = diversion.strip()[:MAX_TEXT] if diversion else None
    return DisplayState(
        line=line,
        destination=destination,
        next_stops=stops,
        delay_s=delay_s,
        on_route=on_route,
        at_stop=at_stop,
        stop_requested=stop_requested,
        announcements=announcements(messages, now),
        diversion=diversion or None,
        ad=local_ad(ad),
        live=live if live is not None and now < live.until else None,
        online=online,
        languages=languages,
        cycle_s=cycle_s,
    )


def from_journey(state: JourneyState) -> JourneyView:
    """The display's view of the journey tracker's state (`onboard.journey.JourneyState`).

    Stops a diversion leaves out are not in `upcoming` at all, so none is marked skipped
    here; a finished trip has no stops ahead and keeps its line and destination.
    """
    stops = tuple(NextStop(c.stop_id, c.name, c.expected_t) for c in state.upcoming)
    return JourneyView(
        line=state.route_short_name or state.route_id,
        destination=state.headsign,
        next_stops=stops,
        delay_s=None if state.finished else state.delay_s,
        on_route=state.on_route,
        at_stop=state.at_stop,
    )


def assignment_labels(assignment: Assignment | None) -> tuple[str, str]:
    """Line and destination to show when nothing better is known: the assigned route id.

    The assignment carries ids only; a journey tracker with the GTFS feed replaces them with
    the route's short name and the trip's headsign.
    """
    if assignment is None:
        return "", ""
    return assignment.route_id or "", ""


def desired_messages(desired: DesiredState | None) -> tuple[PassengerMessage, ...]:
    return tuple(desired.messages) if desired is not None else ()


def to_json(state: DisplayState) -> bytes:
    """The JSON the pages read (field names as in DisplayState)."""
    return msgspec.json.encode(state)


def clip(text: str) -> str:
    """`text` stripped, at most MAX_TEXT characters (cut with an ellipsis)."""
    text = text.strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
