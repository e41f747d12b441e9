"""The frame of every main screen: header, alarm banner, the screen's body, footer.

A main screen follows the app's state through its reactive version counters and redraws only
while it is the screen on show; shown again, it catches up at once. It reads that state through
`self.dashboard` (view.py) and posts a message (messages.py) for whatever the dispatcher does:
it never imports or calls the app, which decides.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from central.dashboard.messages import BusAction, BusActionName
from central.dashboard.view import DashboardView, view_of
from central.dashboard.widgets.alarm_banner import AlarmBanner


class DispatchScreen(Screen[None]):
    """Base of the main screens; subclasses compose `body` and redraw in `on_state`."""

    FOLLOWS_FLEET: ClassVar[bool] = True  # False: redrawn on alarm changes only

    @property
    def dashboard(self) -> DashboardView:
        """The dashboard's state, to draw (read-only)."""
        return view_of(self.app)

    def bus_action(self, action: BusActionName, bus: str | None) -> None:
        """Ask the app to do `action` with `bus`; it decides what follows."""
        self.post_message(BusAction(bus, action))

    def compose(self) -> ComposeResult:
        yield Header(show_clock=True)
        yield AlarmBanner(id="banner")
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        if self.FOLLOWS_FLEET:
            self.watch(self.app, "fleet_version", self._changed, init=False)
        self.watch(self.app, "alarm_version", self._changed, init=False)
        self._changed()

    def on_screen_resume(self) -> None:
        self._changed()

    def _changed(self) -> None:
        if not self.is_current:
            return
        self.query_one(AlarmBanner).show(self.dashboard.alarms)
        self.on_state()

    def on_state(self) -> None:
        """Redraw from `self.dashboard` (fleet, alarms, stats)."""

    def selected_bus(self) -> str | None:
        """The bus the screen is about (the cursor's), for actions like assign."""
        return None
