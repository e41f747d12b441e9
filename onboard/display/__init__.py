"""The passenger display: local pages for the screens in the bus, served by the agent."""

from onboard.display.model import (
    AdSlot,
    Announcement,
    DisplayState,
    JourneyView,
    NextStop,
    display_state,
    from_journey,
)
from onboard.display.server import Display, DisplayInputs

__all__ = [
    "AdSlot",
    "Announcement",
    "Display",
    "DisplayInputs",
    "DisplayState",
    "JourneyView",
    "NextStop",
    "display_state",
    "from_journey",
]
