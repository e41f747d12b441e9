"""Stop announcements from the journey: what a bus says as it drives (REFERENCE.md section 10).

An adapter between the journey core (onboard/journey/) and the Speaker; it keeps only what it
has announced. After each journey update the agent hands it the update's events and the
state and plan as they are now:

- the bus left or passed a stop (`departed`, `passed`): "Nächster Halt: <next stop>" (on the
  last leg ", Endhaltestelle"), kind `next_stop`, ref the next stop's id;
- it comes within `approach_m` of the next stop: the stop's name again, kind `approaching`
  (not for the first stop, where the trip begins, nor right after the same stop's
  "next stop" when stops are close together);
- the trip ends at its terminus: "Endstation, bitte alle aussteigen", kind `terminus`;
- a stop request turns on: a chime, kind `chime`.

Texts go in the display's languages, German first ("de,en": German, then English).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from onboard.audio.api import STOP, Speaker, Utterance
from onboard.journey.plan import TripPlan
from onboard.journey.runtime import Recordable
from onboard.journey.states import DEPARTED, ON, PASSED, TRIP_FINISHED, JourneyState

__all__ = ["StopAnnouncer", "texts_for"]

APPROACH_M = 150.0
APPROACH_GAP_S = 20.0  # no "approaching" this soon after the same stop's "next stop"

PHRASES: dict[str, dict[str, str]] = {
    "de": {
        "next_stop": "Nächster Halt: {name}",
        "last_leg": ", Endhaltestelle",
        "approaching": "{name}",
        "terminus": "Endstation, bitte alle aussteigen",
    },
    "en": {
        "next_stop": "Next stop: {name}",
        "last_leg": ", final stop",
        "approaching": "{name}",
        "terminus": "Final stop, please leave the bus",
    },
}


def texts_for(
    kind: str, name: str, languages: Sequence[str], *, last_leg: bool = False
) -> dict[str, str]:
    """An announcement's text per language, German first."""
    langs = sorted((lang for lang in languages if lang in PHRASES), key=lambda x: x != "de")
    out: dict[str, str] = {}
    for lang in langs or ["de"]:
        p = PHRASES[lang]
        text = p[kind].format(name=name)
        out[lang] = text + p["last_leg"] if kind == "next_stop" and last_leg else text
    return out


class StopAnnouncer:
    def __init__(
        self,
        speaker: Speaker,
        languages: Callable[[], Sequence[str]],
        *,
        approach_m: float = APPROACH_M,
    ) -> None:
        self.speaker = speaker
        self.languages = languages
        self.approach_m = approach_m
        self._announced: dict[tuple[str, str], float] = {}  # (trip, stop) -> when "next stop"
        self._approached: set[tuple[str, str]] = set()
        self._requested = False

    def on_journey(
        self,
        t: float,
        events: Sequence[Recordable],
        state: JourneyState | None,
        plan: TripPlan | None,
    ) -> list[Utterance]:
        """Announce what the journey update of the sample at `t` calls for; the utterances
        said, in order."""
        said: list[Utterance] = []
        left, finished = False, None
        for e in events:
            if e.kind in (DEPARTED, PASSED):
                left = True
            elif e.kind == TRIP_FINISHED:
                finished = e
        if finished is not None:
            stop = str(finished.data().get("stop") or "")
            said.append(self._say("terminus", "", stop))
        if state is not None and not state.finished:
            key = (state.trip_id, state.stop_id)
            if left and key not in self._announced:
                self._announced[key] = t
                last = len(state.upcoming) == 1
                said.append(self._say("next_stop", state.stop_name, state.stop_id, last_leg=last))
            if self._approaching(state, plan) and key not in self._approached:
                self._approached.add(key)
                if t - self._announced.get(key, -1e12) >= APPROACH_GAP_S:
                    said.append(self._say("approaching", state.stop_name, state.stop_id))
        requested = bool(state and state.stop_requested)
        if requested and not self._requested:
            said.append(self._chime())
        self._requested = requested
        if len(self._announced) > 1000:  # a long day: forget old trips
            self._announced.clear()
            self._approached.clear()
        return said

    def _approaching(self, state: JourneyState, plan: TripPlan | None) -> bool:
        if plan is None or state.at_stop or state.stop_index == 0 or state.adherence != ON:
            return False
        if state.dist_m is None or state.stop_index >= len(plan.stops):
            return False
        ahead = plan.stops[state.stop_index].dist_m - state.dist_m
        return 0.0 < ahead <= self.approach_m

    def _say(self, kind: str, name: str, stop_id: str, *, last_leg: bool = False) -> Utterance:
        texts = texts_for(kind, name, self.languages(), last_leg=last_leg)
        u = Utterance(kind=kind, texts=texts, priority=STOP, ref=stop_id)
        self.speaker.say(u)
        return u

    def _chime(self) -> Utterance:
        u = Utterance(kind="chime", priority=STOP, ref="stop_request")
        self.speaker.say(u)
        return u
