"""The passenger display: local pages for the screens in the bus, served by the agent.

Rules of this room: `model` is pure (state in, `DisplayState` out, no I/O); `journey` turns
the journey core's state into the display's `JourneyView` (the journey core knows nothing of
the display); `server` is the local web site (onboard/web/) that serves the pages and the
live feed. The face re-exports the models eagerly and the server lazily, so that importing a
model never loads aiohttp.
"""

from typing import TYPE_CHECKING

from onboard.display.model import (
    AdSlot,
    Announcement,
    DisplayState,
    JourneyView,
    NextStop,
    display_state,
    from_journey,
)
from onboard.lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__ = lazy_exports(
    __name__, {"Display": "onboard.display.server", "DisplayInputs": "onboard.display.server"}
)
