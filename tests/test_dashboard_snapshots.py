"""Snapshots of the fleet table at 80, 120 and 200 columns and of the map with its routes.

The app runs headless (Textual's Pilot at size=(W, H)), without a broker: state injected as
central publishes it, requests answered by central's real dispatch code on a store with the
Cairns timetable (stop names, route shapes). The table's and the map's lines as drawn are
compared with golden text files in tests/snapshots/; `BUSFLEET_UPDATE_SNAPSHOTS=1` writes them
anew (look at the diff before committing it). Beside the golden files, checks that say what
must hold whatever the layout: the bus id and the alarm whole, stop names, delays in minutes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.geometry import Region

from central.config import CentralConfig
from central.dashboard.app import DashboardApp, create_app
from central.dashboard.screens.map import MapScreen
from central.dashboard.widgets.braille_map import BrailleMap
from central.dashboard.widgets.fleet_columns import delay_text
from central.dashboard.widgets.fleet_table import FleetTable
from central.gtfs_import import import_gtfs
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.requests import DispatchReply, DispatchRequest
from protocols.schemas import Alarm, FleetEntry
from tests.conftest import DATA

T0 = 1_800_000_000.0
GOLDEN = Path(__file__).with_name("snapshots")
UPDATE = os.environ.get("BUSFLEET_UPDATE_SNAPSHOTS") == "1"
# Cairns stops in the feed: 750000 "Cedar Rd (Palm Cove) - Hail and Ride Location",
# 750337 "Warren St - Hail and Ride Location"
TRIP = "CNS2014-CNS_MUL-Weekday-00-4165878"


@pytest.fixture(scope="module")
def dispatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dispatch]:
    db = tmp_path_factory.mktemp("central-snapshots") / "central.sqlite"
    config = dataclasses.replace(CentralConfig(), db=str(db))
    store = CentralStore(db)
    import_gtfs(store, DATA / "gtfs" / "cairns_gtfs.zip", now=T0)
    yield Dispatch(store, config, AlarmCenter(store))
    store.close()


def fleet() -> list[FleetEntry]:
    delays = [180, -60, 21552, 0, None, 29, -31, 3600]
    stops = ["750000", "750337", None, "750000", "999999", "750337", "750000", None]
    out = []
    for i in range(1, 9):
        out.append(
            FleetEntry(
                bus=f"cairns-bus-{i:02d}",
                online=i != 4,
                last_seen=T0 - i,
                t=T0 - i,
                lat=-16.92 + i * 0.01,
                lon=145.77 - i * 0.006,
                speed=5.0 + i,
                doors_open=False,
                route_id="110-423" if i % 2 else "111-423",
                trip_id=TRIP if i != 3 else None,
                stop_id=stops[i - 1],
                delay_s=delays[i - 1],
                wifi_clients=i,
                desired_version=2,
                reported_version=2 if i != 5 else 1,
                records=100 * i,
            )
        )
    return out


def alarms() -> dict[str, Alarm | None]:
    def a(i: str, bus: str, kind: str, sev: int, state: str) -> Alarm:
        return Alarm(id=i, bus=bus, kind=kind, severity=sev, state=state, raised_t=T0, t=T0)

    return {
        "a1": a("a1", "cairns-bus-03", "emergency", 4, "active"),
        "a2": a("a2", "cairns-bus-03", "off_route", 3, "active"),
        "a3": a("a3", "cairns-bus-06", "out_of_sync", 2, "acked"),
    }


def make_app(dispatch: Dispatch) -> DashboardApp:
    async def handler(request: DispatchRequest) -> DispatchReply:
        out = await dispatch.handle(topics.dispatch_request("eve"), codec.encode(request), T0)
        return codec.decode(DispatchReply, out[-1][1])

    return create_app(CentralConfig(), user="eve", connect=False, clock=lambda: T0, handler=handler)


def table_text(table: FleetTable) -> str:
    """The table's lines as drawn (its whole width and height)."""
    region = Region(0, 0, table.size.width, table.size.height)
    return "\n".join(strip.text.rstrip() for strip in table.render_lines(region)).rstrip() + "\n"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with BUSFLEET_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"{name} differs from its golden file:\n{text}"


def test_delays_read_in_whole_minutes_with_a_real_minus_sign() -> None:
    assert delay_text(180) == "+3 min"
    assert delay_text(-60) == "\N{MINUS SIGN}1 min"
    assert delay_text(21552) == "+359 min"  # was "+359:1" cut at six cells
    assert delay_text(29) == delay_text(-29) == delay_text(0) == "0 min"
    assert delay_text(-31) == "\N{MINUS SIGN}1 min"
    assert delay_text(None) == ""


@pytest.mark.parametrize("width", [80, 120, 200])
async def test_the_fleet_table_fits_the_terminal(dispatch: Dispatch, width: int) -> None:
    app = make_app(dispatch)
    async with app.run_test(size=(width, 20)) as pilot:
        app.apply_update(fleet(), None, alarms())
        table = app.screen.query_one(FleetTable)
        for _ in range(30):  # the stop names come from central once the app is up
            await pilot.pause(0.1)
            if app.stop_names:
                break
        app.apply_update([], None, None)
        await pilot.pause(0.3)
        text = table_text(table)
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= width
        assert table.virtual_size.width <= width  # nothing to scroll sideways for
        for i in range(1, 9):
            assert f"cairns-bus-{i:02d}" in text  # the bus id never cut
        assert "!emergency +1" in text and "✓out_of_sync" in text  # the alarm never cut
        assert "+3 min" in text and "\N{MINUS SIGN}1 min" in text and "+359 min" in text
        assert "750337" not in text and "750000" not in text  # names, not ids
        header = table.header()
        if "Next stop" in header:
            assert "Warren St" in text and "Cedar Rd" in text
            assert "999999" in text  # a stop the feed does not know: its id
        if width >= 120:
            assert "Next stop" in header and "Trip" in header
        if width >= 200:
            assert TRIP in text and header[-1] == "Position"
        else:
            assert "Position" not in header
        golden(f"fleet-{width}.txt", text)


async def test_the_map_draws_routes_labels_and_the_selected_trip(dispatch: Dispatch) -> None:
    app = make_app(dispatch)
    async with app.run_test(size=(120, 36)) as pilot:
        app.apply_update(fleet(), None, alarms())
        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, MapScreen)
        canvas = screen.query_one(BrailleMap)
        for _ in range(30):
            await pilot.pause(0.1)
            if canvas.shapes:
                break
        assert len(canvas.shapes) > 20 and "110-423" in canvas.shape_routes
        screen.focus_bus("cairns-bus-05")  # as "m" on the fleet table does
        await pilot.press("0")  # fit the fleet
        await pilot.pause(0.3)
        rendered = canvas.render()
        text = rendered.plain + "\n"
        for i in range(1, 9):
            assert f"cairns-bus-{i:02d}" in text, i  # every bus labelled (room enough here)
        assert any("\u2801" <= ch <= "\u28ff" for ch in text), "route lines"
        selected = [s for s in rendered.spans if str(s.style) == "bold yellow"]
        assert selected, "the selected bus's route drawn on top"
        colours = {str(s.style) for s in rendered.spans}
        assert len(colours & {"blue", "magenta", "cyan", "bright_blue"}) >= 2, colours
        assert "on route 110-423 trip " + TRIP in str(screen.query_one("#map-status").render())
        golden("map-routes.txt", text)
