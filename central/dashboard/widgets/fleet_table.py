"""The fleet table: one row per bus, updated in place."""

from __future__ import annotations

import time

from textual.widgets import DataTable

from protocols.schemas import FleetEntry

COLUMNS = (  # (key, label, width): fixed widths, so rows do not jump as values change
    ("bus", "Bus", 10),
    ("status", "Status", 8),
    ("route", "Route", 10),
    ("trip", "Trip", 36),
    ("speed", "km/h", 5),
    ("doors", "Doors", 7),
    ("position", "Position", 20),
    ("seen", "Last seen", 10),
    ("records", "Records", 8),
    ("sync", "State", 18),
)


def cells(e: FleetEntry, now: float) -> tuple[str, ...]:
    speed = "" if e.speed is None else f"{e.speed * 3.6:.0f}"
    doors = {None: "", True: "OPEN", False: "closed"}[e.doors_open]
    position = "" if e.lat is None or e.lon is None else f"{e.lat:.5f}, {e.lon:.5f}"
    seen = "" if e.last_seen is None else f"{max(0.0, now - e.last_seen):.0f} s ago"
    sync = (
        f"v{e.reported_version}"
        if e.desired_version == e.reported_version
        else f"syncing v{e.reported_version}→v{e.desired_version}"
    )
    return (
        e.bus,
        "online" if e.online else "OFFLINE",
        e.route_id or "",
        e.trip_id or "",
        speed,
        doors,
        position,
        seen,
        str(e.records),
        sync,
    )


class FleetTable(DataTable[str]):
    """Live fleet table; the dispatcher moves with the arrow keys, rows sorted by bus id."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, fleet: dict[str, FleetEntry]) -> None:
        now = time.time()
        added = False
        for bus in sorted(fleet):
            row = cells(fleet[bus], now)
            if bus in self.rows:
                for (key, _, _), value in zip(COLUMNS, row, strict=True):
                    self.update_cell(bus, key, value)
            else:
                self.add_row(*row, key=bus)
                added = True
        if added:
            self.sort("bus")
