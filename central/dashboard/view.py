"""What a screen, a widget or the command palette may read of the dashboard: a read-only view.

Attributes down, messages up (Textual's guide): the app owns the state and decides; the
screens draw what this view shows them and post a message (messages.py) for everything a
dispatcher does. The view is a Protocol so that nothing under screens/ or widgets/ imports
the app (which imports every screen: that was an import circle), and so that a test may hand
a screen any object with these attributes.

The one call besides reading is `ask`: the answers central gives to look at something (a
bus's detail, a list, a report). It is typed to those, so a screen cannot send an order by it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from textual.app import App

from central.dashboard.state import AlarmState, BusAlarms, FleetState
from protocols.people_requests import AuditLog
from protocols.release_requests import BusReleases, RolloutStatus
from protocols.report_requests import OperatorReport, RouteReplay
from protocols.requests import (
    CommandAnswer,
    Detail,
    DispatchReply,
    ListGroups,
    Listing,
    ListTimetables,
    Report,
    ShowTimetable,
)
from protocols.schemas import CentralStats

# central's read-only requests
Query = (
    Detail | Listing | Report | ListTimetables | ShowTimetable | ListGroups | CommandAnswer
    | RolloutStatus | BusReleases  # issue 16: software rollouts
    | AuditLog  # issue 18: the audit log
    | OperatorReport | RouteReplay  # issue 18: operator reports, route replay
)  # fmt: skip
Shapes = list[list[tuple[float, float]]]
Stops = list[tuple[str, str, float, float]]


class DashboardView(Protocol):
    """The dashboard's state as the screens see it; redraw when its version counters move."""

    @property
    def fleet_version(self) -> int: ...  # reactive: moves when the fleet changed
    @property
    def alarm_version(self) -> int: ...  # reactive: moves when the alarms changed
    @property
    def fleet(self) -> FleetState: ...
    @property
    def alarms(self) -> AlarmState: ...
    @property
    def bus_alarms(self) -> Mapping[str, BusAlarms]: ...
    @property
    def stats(self) -> CentralStats | None: ...
    @property
    def stop_names(self) -> Mapping[str, str]: ...
    @property
    def link_text(self) -> str: ...
    @property
    def shape_routes(self) -> list[str]: ...  # the route of each shape geometry() gave
    @property
    def clock(self) -> Callable[[], float]: ...

    async def ask(self, query: Query) -> DispatchReply:
        """Ask central to show something; the reply, or a refusal saying why there was none."""
        ...

    async def geometry(self) -> tuple[Shapes, Stops]:
        """Route shapes and stops for the map."""
        ...


def view_of(app: App[Any]) -> DashboardView:
    """The running dashboard app as its view (app.py has mypy check that it provides one)."""
    return cast("DashboardView", app)
