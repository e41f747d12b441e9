"""The journey core's state as the passenger display draws it (`JourneyView`).

The translation lives here, beside the display's model, so that the journey core
(onboard/journey/) imports no presentation: it hands out its own `StopAhead`s.
"""

from __future__ import annotations

import dataclasses

from onboard.display.model import JourneyView, NextStop, from_journey
from onboard.journey.runtime import JourneyRuntime

__all__ = ["journey_view"]


def journey_view(journey: JourneyRuntime) -> JourneyView | None:
    """The display's view: the tracker's next stops, and the stops a diversion skips marked
    skipped (never the first); None while nothing is tracked."""
    state, ahead = journey.state, journey.stops_ahead()
    if state is None or ahead is None:
        return None
    stops = tuple(NextStop(s.stop_id, s.name, s.expected, skipped=s.skipped) for s in ahead)
    return dataclasses.replace(from_journey(state), next_stops=stops)
