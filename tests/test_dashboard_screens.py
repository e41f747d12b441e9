"""The dashboard's main screens, without a broker: state injected as central would publish it,
requests answered by central's real dispatch code on a store with the Cairns timetable.

Each screen is saved as an SVG in test-output/ (to look at) and its text is checked: what a
dispatcher must see is on it. The tests pause before each screenshot (REFERENCE.md §7).
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.config import CentralConfig
from central.dashboard.app import KEY_SCOPES, DashboardApp, create_app
from central.dashboard.messages import BusAction
from central.dashboard.screens.bus_detail import BusDetailScreen
from central.dashboard.screens.help import bindings_of, key_rows
from central.dashboard.screens.map import MapScreen
from central.dashboard.widgets.braille_map import BrailleMap
from central.dashboard.widgets.fleet_table import FleetTable
from central.gtfs_import import import_gtfs
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.requests import Assign, DispatchReply, DispatchRequest, Restart, SendCommand
from protocols.schemas import Alarm, CentralStats, FleetEntry
from tests.conftest import DATA

T0 = 1_800_000_000.0
SIZE = (150, 40)


@pytest.fixture(scope="module")
def dispatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dispatch]:
    db = tmp_path_factory.mktemp("central") / "central.sqlite"
    config = dataclasses.replace(CentralConfig(), db=str(db))
    store = CentralStore(db)
    import_gtfs(store, DATA / "gtfs" / "cairns_gtfs.zip", now=T0)
    store.add_events(
        [("bus-03", 1, T0 - 60, "departed", 0, '{"route": "110-423", "delay_s": 90}', 0, T0)]
    )
    yield Dispatch(store, config, AlarmCenter(store))
    store.close()


def fleet() -> list[FleetEntry]:
    out = []
    for i in range(1, 13):
        out.append(
            FleetEntry(
                bus=f"bus-{i:02d}",
                online=i != 7,
                last_seen=T0 - i,
                t=T0 - i,
                lat=-16.92 + i * 0.004,
                lon=145.77 + i * 0.003,
                speed=8.0 + i,
                doors_open=False,
                route_id="110-423",
                trip_id=f"trip-{i}",
                stop_id=None,
                delay_s=i * 30 - 120,
                wifi_clients=i,
                desired_version=2,
                reported_version=2 if i != 5 else 1,
                records=100 * i,
            )
        )
    return out


def alarms() -> dict[str, Alarm | None]:
    def a(i: str, bus: str, kind: str, sev: int, state: str, **kw: Any) -> Alarm:
        return Alarm(
            id=i, bus=bus, kind=kind, severity=sev, state=state, raised_t=T0 - 30, t=T0 - 20, **kw
        )

    return {
        "a1": a("a1", "bus-03", "emergency", 4, "active", text="driver pressed the button"),
        "a2": a("a2", "bus-05", "out_of_sync", 2, "active", text="runs v1, desired v2"),
        "a3": a(
            "a3",
            "bus-09",
            "dtc",
            3,
            "acked",
            subject="110/0",
            acked_by="alice",
            ack_note="workshop told",
            ack_t=T0 - 10,
        ),
    }


def make_app(dispatch: Dispatch) -> DashboardApp:
    async def handler(request: DispatchRequest) -> DispatchReply:
        out = await dispatch.handle(topics.dispatch_request("eve"), codec.encode(request), T0)
        return codec.decode(DispatchReply, out[-1][1])

    return create_app(CentralConfig(), user="eve", connect=False, clock=lambda: T0, handler=handler)


def text_of(app: DashboardApp, path: Path) -> str:
    """Save the screen as SVG and return the text on it."""
    app.save_screenshot(str(path))
    svg = path.read_text()
    parts = re.findall(r"<text[^>]*>(.*?)</text>", svg, re.S)
    return html.unescape("".join(parts)).replace("\xa0", " ")


async def test_the_fleet_screen_shows_every_bus_with_its_alarm_and_sorts_by_alarm(
    dispatch: Dispatch, output_dir: Path
) -> None:
    app = make_app(dispatch)
    async with app.run_test(size=SIZE) as pilot:
        stats = CentralStats(t=T0, counters={"records": 7800, "rejected": 3})
        app.apply_update(fleet(), stats, alarms())
        await pilot.pause(0.3)
        text = text_of(app, output_dir / "fleet.svg")
        for must in (
            "12 buses, 11 online",
            "7800 records stored",
            "OFFLINE",
            "110-423",
            "+1 min",
            "v1→v2",
            "!emergency",
            "EMERGENCY bus-03 emergency",
        ):
            assert must in text, must
        table = app.screen.query_one(FleetTable)
        await pilot.press("s")  # sort by alarm: what needs a dispatcher first
        assert table.row_keys()[:3] == ["bus-03", "bus-05", "bus-09"]
        await pilot.press("x")  # problems only: alarms and the offline bus
        assert table.row_keys() == ["bus-03", "bus-05", "bus-09", "bus-07"]
        await pilot.press("x", "slash", "t", "r", "i", "p", "minus", "1", "1", "enter")
        assert table.row_keys() == ["bus-11"]
        await pilot.pause(0.3)
        assert "search 'trip-11'" in text_of(app, output_dir / "fleet-search.svg")


async def test_the_alarm_screen_lists_what_to_acknowledge_first_and_who_took_the_rest(
    dispatch: Dispatch, output_dir: Path
) -> None:
    app = make_app(dispatch)
    async with app.run_test(size=SIZE) as pilot:
        app.apply_update(fleet(), None, alarms())
        await pilot.press("2")
        await pilot.pause(0.3)
        text = text_of(app, output_dir / "alarms.svg")
        assert text.index("EMERGENCY") < text.index("out_of_sync") < text.index("alice")
        assert "workshop told" in text and "driver pressed the button" in text
        assert "2 to acknowledge" in text


async def test_the_bus_detail_shows_vehicle_data_assignment_and_commands(
    dispatch: Dispatch, output_dir: Path
) -> None:
    app = make_app(dispatch)
    async with app.run_test(size=(150, 44)) as pilot:
        app.apply_update(fleet(), None, alarms())
        reply = await app.request(Assign(bus="bus-03", route="110-423"))
        assert reply.ok
        reply = await app.request(SendCommand(bus="bus-03", command=Restart()))
        assert reply.ok
        await pilot.press("enter")  # the cursor is on bus-01: open it, then go to bus-03
        assert isinstance(app.screen, BusDetailScreen)
        await pilot.press("escape")
        app.post_message(BusAction("bus-03", "open"))  # as a screen or the palette asks
        await pilot.pause(0.5)
        screen = app.screen
        assert isinstance(screen, BusDetailScreen) and screen.detail is not None
        text = text_of(app, output_dir / "bus-detail.svg")
        shown = ["bus-03", "Vehicle", "speed (wheel)", "Health", "Assignment", "110-423"]
        shown += ["restart", "sent", "departed", "open alarms: emergency"]
        assert [must for must in shown if must not in text] == []


async def test_the_map_draws_the_routes_and_follows_a_bus(
    dispatch: Dispatch, output_dir: Path
) -> None:
    app = make_app(dispatch)
    async with app.run_test(size=SIZE) as pilot:
        app.apply_update(fleet(), None, alarms())
        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, MapScreen)
        canvas = screen.query_one(BrailleMap)
        for _ in range(20):
            await pilot.pause(0.1)
            if canvas.shapes:
                break
        assert len(canvas.shapes) > 20
        rendered = str(canvas.render())
        assert any("\u2801" <= ch <= "\u28ff" for ch in rendered), "route shapes in braille"
        assert rendered.count("●") == 12
        await pilot.press("right_square_bracket", "f")
        assert canvas.follow == "bus-01"
        before = canvas.m_per_dot
        for _ in range(6):
            await pilot.press("plus")
        assert canvas.m_per_dot < before
        await pilot.pause(0.3)
        text = text_of(app, output_dir / "map.svg")
        assert "following bus-01" in text and " bus-01" in text


async def test_the_reports_show_punctuality_per_route_and_the_feedback_inbox(
    dispatch: Dispatch, output_dir: Path
) -> None:
    app = make_app(dispatch)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause(0.3)
        text = text_of(app, output_dir / "punctuality.svg")
        assert "110-423" in text and "on_time_pct" in text
        await pilot.press("b")
        await pilot.pause(0.3)
        assert "Passenger feedback inbox" in text_of(app, output_dir / "feedback.svg")


async def test_the_help_screen_lists_every_key_of_every_screen(
    dispatch: Dispatch, output_dir: Path
) -> None:
    rows = key_rows(KEY_SCOPES)
    for where, cls in KEY_SCOPES:
        assert len([r for r in rows if r[0] == where]) == len(bindings_of(cls)) > 0, where
    app = make_app(dispatch)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        text = text_of(app, output_dir / "help.svg")
        assert "Keys" in text and "Acknowledge" in text and "Problems only" in text


async def test_the_command_palette_opens_a_bus_by_name(dispatch: Dispatch) -> None:
    app = make_app(dispatch)
    async with app.run_test(size=SIZE) as pilot:
        app.apply_update(fleet(), None, alarms())
        await pilot.press("ctrl+p")
        await pilot.press(*"open bus-08")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, BusDetailScreen) and screen.bus == "bus-08"
