"""The journey core: where on its trip the bus is, its stops, its delay, its diversions.

Rules of this room:
- pure: it imports only `protocols/`, the standard library and its own modules — no
  presentation (display, driver, portal), no I/O library, no clock of its own (time is an
  argument). Each presentation turns journey state into its own view (onboard/display/
  journey.py, onboard/portal/journey.py, onboard/driver/model.py); tests/test_journey_purity.py
  holds the line.
- modules: plan (a trip's timetable and path), states (the tracker's tables, events, state),
  tracker (the machine), diversion (diverted plans), runtime (the agent's driver of them).

The face re-exports the models eagerly; it is cheap, since nothing here loads a server.
"""

from onboard.journey.diversion import Detour
from onboard.journey.plan import TripPlan
from onboard.journey.runtime import JourneyRuntime, StopAhead
from onboard.journey.states import JourneyEvent, JourneyState, TrackerParams
from onboard.journey.tracker import JourneyTracker

__all__ = [
    "Detour",
    "JourneyEvent",
    "JourneyRuntime",
    "JourneyState",
    "JourneyTracker",
    "StopAhead",
    "TrackerParams",
    "TripPlan",
]
