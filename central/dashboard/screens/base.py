"""The frame of every main screen: header, alarm banner, the screen's body, footer.

A main screen follows the app's state through its reactive version counters and redraws only
while it is the screen on show; shown again, it catches up at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from central.dashboard.widgets.alarm_banner import AlarmBanner

if TYPE_CHECKING:
    from central.dashboard.app import DashboardApp


class DispatchScreen(Screen[None]):
    """Base of the main screens; subclasses compose `body` and redraw in `on_state`."""

    FOLLOWS_FLEET: ClassVar[bool] = True  # False: redrawn on alarm changes only

    @property
    def dash(self) -> DashboardApp:
        return cast("DashboardApp", self.app)

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
        self.query_one(AlarmBanner).show(self.dash.alarms)
        self.on_state()

    def on_state(self) -> None:
        """Redraw from `self.dash` (fleet, alarms, stats)."""

    def selected_bus(self) -> str | None:
        """The bus the screen is about (the cursor's), for actions like assign."""
        return None
