"""The driver's terminal: a local page for the touch screen in the cab, served by the agent.

Rules of this room: `model` is pure (journey state and messages in, `DriverState` out);
`store` keeps its two tables in agent.sqlite (onboard/store.py); `server` and `http` are the
local web site (onboard/web/). What the driver sends leaves through the outbox, never
directly. The face re-exports the models eagerly and the server lazily, so that importing a
model never loads aiohttp.
"""

from typing import TYPE_CHECKING

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
from onboard.driver.store import DriverStore
from onboard.lazy import lazy_exports

if TYPE_CHECKING:
    from onboard.driver.http import cross_origin_reason
    from onboard.driver.server import DriverTerminal, RecordEvent, position_of

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

__getattr__ = lazy_exports(
    __name__,
    {
        "cross_origin_reason": "onboard.driver.http",
        "DriverTerminal": "onboard.driver.server",
        "RecordEvent": "onboard.driver.server",
        "position_of": "onboard.driver.server",
    },
)
