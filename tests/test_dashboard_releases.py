"""The dashboard's Releases screen (issue 16), opened by its key with Pilot: rollouts with their
wave and counts, why one halted, and per bus the version and phase it reports, as literal text
on an 80-column terminal. Central's answers come from a real `Dispatch` over a real store (both
backends); the buses' reports and events go through central's `Ingest`, as from the broker."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from central.config import CentralConfig
from central.dashboard.app import create_app
from central.dashboard.screens.releases import ReleasesScreen
from central.service.dispatch import Dispatch
from central.service.ingest import Ingest
from central.service.rollout_task import RolloutTask
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.release import EVENT_UPDATE_FAILED
from protocols.release_requests import StartRollout
from protocols.requests import DispatchReply, DispatchRequest
from protocols.schemas import Event, EventBatch, ReleaseState, ReportedState
from tests.test_dashboard_live import until

T0 = 1_800_000_000.0
MARKUP = "[b]boom[/b] [@click=app.quit]"  # a bus's words: shown as they are, never markup


@pytest.fixture
def dispatch(tmp_path: Path, central_db: str) -> Dispatch:
    config = dataclasses.replace(CentralConfig(), db=central_db, media_dir=str(tmp_path / "media"))
    store = open_store(config.db)
    store.save_buses((b, True, 1, T0, "{}") for b in ("bus-1", "bus-2", "bus-3"))
    ingest = Ingest(store)
    d = Dispatch(store, config, ingest.alarms, ingest.on_desired)
    d.ingest = ingest  # type: ignore[attr-defined]  # the test's way in for the buses
    return d


async def test_the_releases_screen_shows_rollouts_and_which_bus_runs_what(
    dispatch: Dispatch,
) -> None:
    ingest: Ingest = dispatch.ingest  # type: ignore[attr-defined]

    async def handler(request: DispatchRequest) -> DispatchReply:
        out = await dispatch.handle(topics.dispatch_request("eve"), codec.encode(request), T0)
        return codec.decode(DispatchReply, out[-1][1])

    envelope = DispatchRequest(
        id="r1", t=T0, request=StartRollout(version="0.3.0", to=["all"], waves="1,100%")
    )
    assert (await handler(envelope)).ok
    state = ReleaseState(running="0.2.0", slot="a", wanted="0.3.0", phase="failed", error=MARKUP)
    reported = ReportedState(bus="bus-1", version=1, t=T0 + 1, release=state)
    ingest.handle(topics.reported("bus-1"), codec.encode(reported), T0 + 1)
    failed = Event(seq=1, t=T0 + 1, kind=EVENT_UPDATE_FAILED, severity=3,
                   data={"version": "0.3.0", "reason": MARKUP})  # fmt: skip
    batch = EventBatch(bus="bus-1", events=[failed])
    ingest.handle(topics.events("bus-1"), codec.encode(batch), T0 + 1)
    RolloutTask(dispatch.store, dispatch.alarms).step(T0 + 2)  # halts: one failure of one

    app = create_app(CentralConfig(), user="eve", connect=False, clock=lambda: T0, handler=handler)
    async with app.run_test(size=(80, 30)) as pilot:
        await pilot.press("7")
        await until(pilot, lambda: isinstance(app.screen, ReleasesScreen), "the Releases screen")
        screen = app.screen
        rollouts = screen.query_one("#rollouts", DataTable)
        buses = screen.query_one("#bus-releases", DataTable)
        await until(pilot, lambda: rollouts.row_count == 1 and buses.row_count == 3, "the rows")
        row = [str(c) for c in rollouts.get_row_at(0)]
        assert row[1:] == ["0.3.0", "halted", "1/2", "0", "0", "2", "1"]
        by_bus = {
            str(buses.get_row_at(i)[0]): [str(c) for c in buses.get_row_at(i)] for i in range(3)
        }
        assert by_bus["bus-1"][1:5] == ["0.2.0", "a", "failed", "0.3.0"]
        assert by_bus["bus-2"][1] == "—"  # reports nothing yet
        note = str(screen.query_one("#halted", Static).render())
        assert f"0.3.0: 1 of 3 buses failed (1 halt it); bus-1: {MARKUP}" in note
        # Every column of both tables is in view on an 80-column terminal.
        for table in (rollouts, buses):
            assert sum(col.get_render_width(table) for col in table.columns.values()) <= 80
        assert app.is_running  # the bus's markup quit nothing
