"""The driver's terminal: a local page for the touch screen in the cab, served by the agent."""

from onboard.driver.http import cross_origin_reason
from onboard.driver.model import (
    CANNED,
    Canned,
    DispatchMessage,
    DriverState,
    MapView,
    Outgoing,
    adherence,
    driver_state,
    map_view,
)
from onboard.driver.server import DriverTerminal, RecordEvent, position_of
from onboard.driver.store import DriverStore

__all__ = [
    "CANNED",
    "Canned",
    "DispatchMessage",
    "DriverState",
    "DriverStore",
    "DriverTerminal",
    "MapView",
    "Outgoing",
    "RecordEvent",
    "adherence",
    "cross_origin_reason",
    "driver_state",
    "map_view",
    "position_of",
]
