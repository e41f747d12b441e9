"""What the agent's parts hand the audio: an utterance, spoken once, in priority order.

One queue on the bus (onboard/audio/), never two sounds at once: a live announcement from city
hall comes before a stop announcement, which comes before an ad's sound. The part that asks
for an utterance may want to show it at the moment it is spoken (the two-senses principle):
`on_start` is called when its playback begins (at once when the bus has no audio).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

LIVE, STOP, AD = 3, 2, 1  # priorities: higher first; equal ones in order of arrival


@dataclass(frozen=True, slots=True)
class Utterance:
    kind: str  # "live" (city hall), "next_stop", "approaching", "terminus", "chime", "ad"
    # language -> text, spoken in the display's languages (German first); empty for a chime
    texts: dict[str, str] = field(default_factory=dict)
    priority: int = STOP
    ref: str = ""  # the stop id (a recorded file for it is preferred) or the announcement's id


OnStart = Callable[["Utterance"], None]


class Speaker(Protocol):
    def say(self, utterance: Utterance, on_start: OnStart | None = None) -> None:
        """Queue `utterance`; `on_start(utterance)` when its playback begins."""
