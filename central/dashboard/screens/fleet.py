"""The main screen: a summary line and the fleet table."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from central.dashboard.state import FleetState, summary
from central.dashboard.widgets.fleet_table import FleetTable
from protocols.schemas import CentralStats


class FleetScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Header(show_clock=True)
        yield Static("connecting…", id="summary")
        yield FleetTable(id="fleet")
        yield Footer()

    def refresh_fleet(self, fleet: FleetState, stats: CentralStats | None) -> None:
        self.query_one(FleetTable).show(dict(fleet))
        self.query_one("#summary", Static).update(summary(fleet, stats))
