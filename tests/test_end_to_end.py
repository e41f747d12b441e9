"""The whole foundation live: real mosquitto, central, three simulated buses with real agents.

Each bus is its own process (the hw_sim GPS on a pty, the CAN sim on a virtual channel, the
production agent), as in `busfleet demo`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from busfleet.broker.launch import Broker, run_mosquitto
from busfleet.demo import Fleet, pick_trips, spawn_bus, start_fleet
from busfleet.simbus import DEFAULT_GTFS
from central import client
from central.config import CentralConfig
from protocols import codec
from protocols.gtfs.feed import read_feed
from protocols.requests import Assign
from protocols.schemas import JourneyStatus, ReportedState
from tests.fleet_helpers import FleetWatcher, Truth, rows, wait_for

BUSES = ("bus-01", "bus-02", "bus-03")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with run_mosquitto(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture(scope="module")
def fleet(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with start_fleet(tmp_path_factory.mktemp("fleet"), broker, 3, progress=False) as f:
        yield f


@pytest.fixture
def watcher(broker: Broker) -> Iterator[FleetWatcher]:
    w = FleetWatcher(broker)
    yield w
    w.close()


def positions(fleet: Fleet, bus: str) -> list[tuple[float, float, float]]:
    return rows(
        fleet.db,
        "SELECT t, lat, lon FROM telemetry WHERE bus = ? AND lat IS NOT NULL ORDER BY seq",
        bus,
    )  # type: ignore[return-value]


def test_positions_stored_at_central_match_the_simulators_ground_truth(fleet: Fleet) -> None:
    for bus in BUSES:
        wait_for(lambda bus=bus: len(positions(fleet, bus)) >= 8, 60, f"8 positions of {bus}")
    for bus in BUSES:
        truth = Truth(fleet.workdir / f"{bus}.truth.jsonl")
        stored = positions(fleet, bus)
        errors = [truth.error_m(t, lat, lon) for t, lat, lon in stored]
        matched = [e for e in errors if e is not None]
        assert len(matched) == len(stored), f"{bus}: stored fixes without a truth epoch"
        assert max(matched) < 15.0, f"{bus}: worst position error {max(matched):.1f} m"


def test_fleet_state_shows_every_bus_online_with_vehicle_data(
    fleet: Fleet, watcher: FleetWatcher
) -> None:
    wait_for(lambda: watcher.online() >= set(BUSES), 60, "three buses online in fleet state")
    wait_for(lambda: all(watcher.entries[b].lat is not None for b in BUSES), 30, "positions")
    vehicle = rows(
        fleet.db,
        "SELECT COUNT(*) FROM telemetry WHERE rpm IS NOT NULL AND "
        "speed_kmh IS NOT NULL AND odometer_m IS NOT NULL",
    )
    assert vehicle[0][0] > 0, "no CAN vehicle data reached central"


def test_an_assignment_reaches_the_bus_and_comes_back_as_reported_state(
    fleet: Fleet, watcher: FleetWatcher
) -> None:
    wait_for(lambda: "bus-01" in watcher.online(), 60, "bus-01 online")
    config = dataclasses.replace(
        CentralConfig(),
        db=str(fleet.db),
        mqtt_host=fleet.broker.host,
        mqtt_port=fleet.broker.port,
    )
    trip = pick_trips(DEFAULT_GTFS, 5)[4]
    request = Assign(bus="bus-01", trip=trip)  # as `busfleet central assign` asks central
    reply = asyncio.run(client.ask(config, request, user="test"))
    assert reply.ok, reply.error
    version = reply.result["version"]
    entry = wait_for(
        lambda: (e := watcher.entries.get("bus-01")) and e.reported_version == version and e,
        20,
        "bus-01 to report the new version",
    )
    assert entry.trip_id == trip
    assert entry.desired_version == version


def _reported_journey(fleet: Fleet, bus: str) -> JourneyStatus | None:
    found = rows(fleet.db, "SELECT body FROM reported WHERE bus = ?", bus)
    if not found:
        return None
    journey = codec.decode(ReportedState, bytes(found[0][0])).journey
    return journey if journey is not None and journey.stop_id else None


def test_each_bus_tracks_the_trip_dispatch_assigned_and_reports_its_next_stop(
    fleet: Fleet,
) -> None:
    # bus-01 may be reassigned by another test: the two others drive what the demo assigned.
    feed = read_feed(DEFAULT_GTFS)
    for bus, trip in zip(BUSES[1:], pick_trips(DEFAULT_GTFS, 3)[1:], strict=True):
        journey = wait_for(functools.partial(_reported_journey, fleet, bus), 60, f"{bus} journey")
        assert journey is not None and journey.trip_id == trip
        assert journey.route_id == feed.trips[trip].route_id
        assert journey.stop_id in {c.stop_id for c in feed.stop_times(trip)}
        assert journey.start_date is not None and len(journey.start_date) == 8
        assert not journey.finished


def test_a_killed_agent_is_marked_offline_by_its_last_will(
    fleet: Fleet, watcher: FleetWatcher
) -> None:
    spawn_bus(fleet, "bus-09", pick_trips(DEFAULT_GTFS, 1)[0], 8)
    wait_for(lambda: "bus-09" in watcher.online(), 60, "bus-09 online")
    killed = fleet.procs.pop("bus-09")
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    # Well inside central's 30 s silence timeout: only the will can do it this fast.
    wait_for(lambda: "bus-09" not in watcher.online(), 10, "bus-09 offline")
    assert watcher.online() >= set(BUSES)


def test_the_workdir_has_a_log_per_process(fleet: Fleet) -> None:
    logs = {p.stem for p in Path(fleet.workdir / "logs").glob("*.log")}
    assert {"central", *BUSES} <= logs
    assert fleet.crashed() == []


async def test_the_dashboard_shows_the_live_fleet_with_rows_that_update(
    fleet: Fleet, output_dir: Path
) -> None:
    from central.dashboard.app import create_app
    from central.dashboard.widgets.fleet_table import FleetTable

    config = dataclasses.replace(
        CentralConfig(),
        mqtt_host=fleet.broker.host,
        mqtt_port=fleet.broker.port,
        mqtt_username="dispatcher",
    )
    app = create_app(config)
    async with app.run_test(size=(160, 30)) as pilot:
        table = app.screen.query_one(FleetTable)

        async def until(check: object, what: str, seconds: float = 60) -> None:
            for _ in range(int(seconds / 0.2)):
                if check():  # type: ignore[operator]
                    return
                await pilot.pause(0.2)
            raise AssertionError(
                f"dashboard: timed out waiting for {what} ({app.updates} updates, "
                f"link {app.sub_title!r}, rows {table.row_keys()})"
            )

        await until(lambda: set(BUSES) <= set(table.row_keys()), "three bus rows")
        before = {b: table.cell(b, "records") for b in BUSES}
        await until(
            lambda: all(table.cell(b, "records") != before[b] for b in BUSES),
            "the record counts of all three rows to change",
        )
        assert all(table.cell(b, "status") == "online" for b in BUSES)
        assert all(table.cell(b, "position") for b in BUSES), "every row shows a position"
        await pilot.press("down")
        assert table.cursor_row == 1
        app.save_screenshot(str(output_dir / "dashboard.svg"))
