"""The dashboard's operator reports and route replay (issue 18), without a broker: requests
answered by central's real dispatch code on a SQLite store seeded with a month of trips
(tests/test_operator_reports.py) and one bus's drive. The Reports screen shows the trips
report's rows; a replay chosen by bus and window draws the drive's track on the map, and the
keys step the marker along it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest
from rich.text import Text
from textual.widgets import DataTable, Static

from central.config import CentralConfig
from central.dashboard.app import DashboardApp, create_app
from central.dashboard.screens.form import FormScreen
from central.dashboard.screens.operator_reports import OperatorReportsScreen
from central.dashboard.screens.route_replay import RouteReplayScreen, time_text
from central.dashboard.widgets.braille_map import BrailleMap
from central.operator_reports import trips_report
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.requests import DispatchReply, DispatchRequest
from tests.test_dashboard_live import fill, until
from tests.test_operator_reports import local, seed
from tests.test_route_replay_requests import N_REPLAY, REPLAY_BUS, T_REPLAY, replay_rows

NOW = local(dt.date(2026, 6, 30), 12 * 3600)  # the dashboard's clock: the last day of June
SIZE = (80, 30)  # the narrowest desk


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralStore]:
    db = tmp_path_factory.mktemp("replay-central") / "central.sqlite"
    s = CentralStore(db)
    seed(s)
    s.add_records(replay_rows())
    yield s
    s.close()


def make_app(store: CentralStore) -> DashboardApp:
    config = dataclasses.replace(CentralConfig(), db=str(store.path))
    dispatch = Dispatch(store, config, AlarmCenter(store))

    async def handler(request: DispatchRequest) -> DispatchReply:
        out = await dispatch.handle(topics.dispatch_request("eve"), codec.encode(request), NOW)
        return codec.decode(DispatchReply, out[-1][1])

    return create_app(
        CentralConfig(), user="eve", connect=False, clock=lambda: NOW, handler=handler
    )


def rows_of(table: DataTable[object]) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def marker_cell(text: Text) -> tuple[int, int]:
    """Where the marker (the bus's dot) is in the map's rendered text: (column, line)."""
    found = [(ln.index("●"), y) for y, ln in enumerate(text.plain.split("\n")) if "●" in ln]
    assert len(found) == 1, found
    return found[0]


async def test_the_reports_screen_shows_the_trips_report(store: CentralStore) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("9")
        screen = app.screen
        assert isinstance(screen, OperatorReportsScreen)
        table = screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count > 0, "the trips report")
        week = trips_report(store, dt.date(2026, 6, 24), dt.date(2026, 6, 30))
        expected = [
            [r.day, r.route, str(r.planned), str(r.operated), str(r.partial), str(r.missed),
             str(r.late_starts)]
            for r in week
        ]  # fmt: skip
        assert rows_of(table) == expected and len(expected) >= 8  # 5 weekdays, 2 routes
        assert ["2026-06-30", "R1", "2", "1", "0", "1", "0"] in expected  # T1 missed on the 30th
        title = str(screen.query_one("#report-title", Static).render())
        assert "2026-06-24 to 2026-06-30" in title and f"{len(expected)} rows" in title
        assert table.virtual_size.width <= SIZE[0]  # fits 80 columns
        # the window of the whole month, one route
        await pilot.press("w")
        assert isinstance(app.screen, FormScreen)
        form = app.screen
        form.query_one("#field-first").value = "2026-06-01"  # type: ignore[attr-defined]
        form.query_one("#field-route").value = "R2"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await until(pilot, lambda: table.row_count == 21, "June's trips of R2")
        assert {r[1] for r in rows_of(table)} == {"R2"}
        assert sum(int(r[3]) for r in rows_of(table)) == 19  # T3 missed twice
        for key, heading in (("k", "km"), ("u", "on time %"), ("p", "plays"), ("b", "text")):
            await pilot.press(key)
            await until(
                pilot,
                lambda h=heading: h in [str(c.label) for c in table.columns.values()],
                heading,
            )
            assert table.virtual_size.width <= SIZE[0], key  # every report fits 80 columns


async def test_a_route_replay_draws_the_track_and_steps_the_marker(store: CentralStore) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("9", "y")
        assert isinstance(app.screen, FormScreen)
        for name, value in (
            ("bus", REPLAY_BUS),
            ("since", time_text(T_REPLAY)),
            ("until", time_text(T_REPLAY + N_REPLAY)),
        ):
            field = app.screen.query_one(f"#field-{name}")
            field.value = ""  # type: ignore[attr-defined]
            field.focus()
            await fill(pilot, value)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RouteReplayScreen), "the replay")
        screen = app.screen
        assert isinstance(screen, RouteReplayScreen)
        await until(pilot, lambda: screen.loaded, "the replay's positions")
        await pilot.pause()
        fixes = [(r[2], r[3], r[4]) for r in replay_rows() if r[3] is not None]
        window = [f for f in fixes if T_REPLAY <= f[0] < T_REPLAY + N_REPLAY]
        assert screen.points[0] == window[0] and screen.points[-1] == window[-1]
        assert len(screen.points) == min(2000, len(window))
        m = screen.query_one(BrailleMap)
        assert m.shapes == [[(lat, lon) for _, lat, lon in screen.points]]  # the track
        drawn = m.render()
        dots = sum(1 for ch in drawn.plain if "\u2801" <= ch <= "\u28ff")
        assert dots > 20, drawn.plain  # the track is drawn across the map
        assert m.buses[REPLAY_BUS].lat == window[0][1]  # the marker at the start
        start = marker_cell(drawn)
        status = str(screen.query_one("#map-status", Static).render())
        assert f"point 1/{len(screen.points)}" in status
        await pilot.press("right", "right", "right")
        assert screen.index == 3 and m.buses[REPLAY_BUS].t == screen.points[3][0]
        assert f"point 4/{len(screen.points)}" in str(screen.query_one("#map-status").render())
        await pilot.press("left")
        assert screen.index == 2
        await pilot.press("end")
        await pilot.pause()
        assert m.buses[REPLAY_BUS].lat == window[-1][1]
        end = marker_cell(m.render())
        assert end[0] > start[0] + 10 and end[1] < start[1]  # north-east, across the map
        await pilot.press("home", "space")  # play: the marker moves on by itself
        await until(pilot, lambda: screen.index > 10, "the replay playing")
        await pilot.press("space")
        paused = screen.index
        await pilot.pause(0.3)
        assert screen.index == paused
        await pilot.press("escape")
        assert isinstance(app.screen, OperatorReportsScreen)


async def test_a_replay_of_a_window_without_positions_says_so(store: CentralStore) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("9")
        screen = RouteReplayScreen("bus-1", T_REPLAY, T_REPLAY + 60)
        app.push_screen(screen)
        await until(pilot, lambda: screen.loaded, "the empty replay")
        await pilot.pause()
        assert "no positions in this window" in str(screen.query_one("#map-status").render())
        await pilot.press("right", "space", "end")  # nothing to step: no crash
        bad = RouteReplayScreen(REPLAY_BUS, T_REPLAY, T_REPLAY + 3 * 86400)
        app.push_screen(bad)
        await until(pilot, lambda: bool(bad.error), "the refusal")
        assert "24 hours at most" in str(bad.query_one("#map-status").render())
