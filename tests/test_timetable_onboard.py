"""On the bus (issue 14): the timetable central publishes is downloaded ahead (resuming after a
cut, hash checked), switched to at its valid_from by the bus's own clock even with the link
down, kept through a restart; a bad package is refused and the old version runs on; a bus
without any timetable says so and runs on.

Real pieces: mosquitto, the agent (`onboard.agent.Agent`), its agent.sqlite, an aiohttp server
with Range support that can cut a download half-way or flip a byte (tests/ads_helpers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zipfile
from pathlib import Path

from busfleet.broker.launch import Broker, run_mosquitto
from hw_sim.drive import Drive, DriveParams
from onboard.journey.runtime import JourneyRuntime
from protocols import codec
from protocols.gtfs.feed import parse_feed
from protocols.gtfs.package import package_sha256
from protocols.schemas import (
    Assignment,
    DesiredState,
    Position,
    ReportedState,
    TimetableState,
)
from tests.ads_helpers import FlakyMedia
from tests.timetable_helpers import (
    agent_for,
    events_of,
    gtfs_files,
    package,
    publish_desired,
    ref_for,
    shown_stops,
    until,
)

RENAMED = "Harbour Gate"
TRIP = Assignment(trip_id="T1")


def timetable_of(agent: object) -> TimetableState | None:
    state = codec.decode(ReportedState, agent._reported_payload())  # type: ignore[attr-defined]
    return state.timetable


@contextlib.asynccontextmanager
async def running(agent: object):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(agent.run())  # type: ignore[attr-defined]
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_bus_downloads_v1_resuming_a_cut_then_switches_to_v2_at_valid_from_offline(
    tmp_path: Path,
) -> None:
    v1, sha1 = package()
    v2, sha2 = package(last_stop=RENAMED)
    server = FlakyMedia(files={sha1: v1, sha2: v2}, cut_after={sha1: len(v1) // 2})
    data_dir = tmp_path / "bus"
    # The bus's clock, held an hour back until the link is down, then set right: valid_from
    # comes while offline whatever the machine's speed (no timing in the test).
    behind = [3600.0]
    valid_from = time.time() + 5.0
    async with server.serve() as base, contextlib.AsyncExitStack() as stack:
        broker = stack.enter_context(run_mosquitto(tmp_path / "mq"))
        agent = agent_for(data_dir, broker.port)
        agent.timetable.clock = lambda: time.time() - behind[0]
        async with running(agent) as task:
            await publish_desired(
                broker.port,
                DesiredState(bus="bus-t", version=1, assignment=TRIP,
                             timetable=ref_for(1, v1, base)),
            )  # fmt: skip
            await until("v1 runs", lambda: agent.timetable.running is not None, task)
            # The cut download was resumed where it stopped, not started over.
            assert (sha1, f"bytes={len(v1) // 2}-") in server.ranges
            assert timetable_of(agent) == TimetableState(running=1, source="central")
            await until("the display shows v1", lambda: "Stop 3" in shown_stops(agent), task)

            await publish_desired(
                broker.port,
                DesiredState(bus="bus-t", version=2, assignment=TRIP,
                             timetable=ref_for(2, v2, base, valid_from=valid_from)),
            )  # fmt: skip
            await until("v2 staged", lambda: agent.timetable.staged is not None, task)
            assert timetable_of(agent) == TimetableState(running=1, staged=2, source="central")
            assert RENAMED not in shown_stops(agent)

            await stack.aclose()  # the broker stops: the link is down from here
            await until("the link is down", lambda: not agent.link.connected.is_set(), task)
            behind[0] = 0.0
            agent.timetable.clock_set()
            await until("v2 runs", lambda: _running_version(agent) == 2, task)
            assert not agent.link.connected.is_set()
            await until("the display shows the renamed stop",
                        lambda: RENAMED in shown_stops(agent), task)  # fmt: skip
            assert timetable_of(agent) == TimetableState(running=2, source="central")
            switches = events_of(agent, "timetable_switched")
            assert [e.data["version"] for e in switches] == [1, 2]
            assert switches[1].t >= valid_from
            assert agent.journey is not None and agent.journey.state is not None
            assert agent.journey.state.trip_id == "T1"  # still tracking, on the new feed
        # Only the running package is left on disk (v1 pruned).
        kept = {p.name.split(".")[0] for p in (data_dir / "timetables").glob("*.bin")}
        assert kept == {sha2}


async def test_a_restarted_bus_runs_the_version_it_ran_and_switches_to_the_staged_one_offline(
    tmp_path: Path, mosquitto: Broker
) -> None:
    v1, _ = package()
    v2, sha2 = package(last_stop=RENAMED)
    server = FlakyMedia(files={package_sha256(v1): v1, sha2: v2})
    data_dir = tmp_path / "bus"
    async with server.serve() as base:
        agent = agent_for(data_dir, mosquitto.port)
        async with running(agent) as task:
            await publish_desired(
                mosquitto.port,
                DesiredState(bus="bus-t", version=1, assignment=TRIP,
                             timetable=ref_for(1, v1, base)),
            )  # fmt: skip
            await until("v1 runs", lambda: _running_version(agent) == 1, task)
            await publish_desired(
                mosquitto.port,
                DesiredState(bus="bus-t", version=2, assignment=TRIP,
                             timetable=ref_for(2, v2, base, valid_from=time.time() + 86400)),
            )  # fmt: skip
            await until("v2 staged", lambda: agent.timetable.staged is not None, task)
            said = len(events_of(agent, "no_timetable"))  # 1: it started with none
    # Restarted with no broker and no server: from agent.sqlite and the packages on disk.
    agent = agent_for(data_dir, 1)
    async with running(agent) as task:
        await until("v1 runs again", lambda: _running_version(agent) == 1, task)
        assert timetable_of(agent) == TimetableState(running=1, staged=2, source="central")
        await until("the display shows v1", lambda: "Stop 3" in shown_stops(agent), task)
        assert RENAMED not in shown_stops(agent)
        assert len(events_of(agent, "no_timetable")) == said == 1  # none this time


def _running_version(agent: object) -> int | None:
    ref = agent.timetable.running  # type: ignore[attr-defined]
    return None if ref is None else int(ref.version)


async def test_a_package_that_fails_its_hash_or_does_not_read_is_refused_and_the_old_runs_on(
    tmp_path: Path, mosquitto: Broker
) -> None:
    # The bus starts on agent.toml's bootstrap feed, then central's v1 replaces it.
    local = tmp_path / "local.zip"
    with zipfile.ZipFile(local, "w") as zf:
        for name, text in gtfs_files(last_stop="Local End").items():
            zf.writestr(name, text)
    v1, sha1 = package()
    v2, sha2 = package(last_stop=RENAMED)
    junk = b"PK\x03\x04 these bytes hash right but are no package"
    server = FlakyMedia(files={sha1: v1, sha2: v2, package_sha256(junk): junk}, corrupt={sha2})
    agent = agent_for(tmp_path / "bus", mosquitto.port, gtfs=str(local))
    async with server.serve() as base, running(agent) as task:
        await until("the local feed runs", lambda: agent.journey is not None, task)
        assert timetable_of(agent) == TimetableState(source="local")
        await publish_desired(
            mosquitto.port,
            DesiredState(bus="bus-t", version=1, assignment=TRIP, timetable=ref_for(1, v1, base)),
        )
        await until("v1 runs", lambda: _running_version(agent) == 1, task)
        await publish_desired(
            mosquitto.port,
            DesiredState(bus="bus-t", version=2, assignment=TRIP, timetable=ref_for(2, v2, base)),
        )
        await until("v2 refused", lambda: agent.timetable.error is not None, task)
        state = timetable_of(agent)
        assert state is not None and state.running == 1 and state.source == "central"
        assert state.staged is None and "v2 refused: " in (state.error or "")
        assert "hash mismatch" in (state.error or "")
        await until("the display shows v1", lambda: "Stop 3" in shown_stops(agent), task)
        assert RENAMED not in shown_stops(agent)
        (refused,) = events_of(agent, "timetable_refused")
        assert refused.data["version"] == 2 and refused.data["sha256"] == sha2

        await publish_desired(
            mosquitto.port,
            DesiredState(bus="bus-t", version=3, assignment=TRIP,
                         timetable=ref_for(3, junk, base)),
        )  # fmt: skip
        await until("v3 refused", lambda: "v3 refused" in (agent.timetable.error or ""), task)
        assert "does not read" in (agent.timetable.error or "")
        assert _running_version(agent) == 1 and "Stop 3" in shown_stops(agent)
        assert [e.data["version"] for e in events_of(agent, "timetable_refused")] == [2, 3]


async def test_a_bus_without_any_timetable_says_so_once_and_runs_on(
    tmp_path: Path, mosquitto: Broker
) -> None:
    agent = agent_for(tmp_path / "bus", mosquitto.port)
    async with running(agent) as task:
        await until("no_timetable said", lambda: bool(events_of(agent, "no_timetable")), task)
        await until("its link is up", agent.link.connected.is_set, task)
        assert agent.journey is None and not task.done()
        assert len(events_of(agent, "no_timetable")) == 1
        assert timetable_of(agent) == TimetableState()
        assert shown_stops(agent) == []


def test_a_trip_in_progress_finishes_on_its_timetable_and_the_next_one_takes_the_new() -> None:
    old = parse_feed(gtfs_files(lead_s=60))
    new = parse_feed(gtfs_files(lead_s=60, last_stop=RENAMED))
    runtime = JourneyRuntime(old)
    now = time.time()
    runtime.assign(TRIP, (), now)
    assert runtime.tracker is not None
    plan = runtime.tracker.plan
    drive = Drive(
        plan.path,
        [(s.stop_id, s.dist_m) for s in plan.stops],
        start_t=plan.first_departure_t - 30.0,
        seed=1,
        params=DriveParams(traffic_noise=0.0, stop_prob=1.0),
    )
    t, switched_at = drive.t, None
    names: list[list[str]] = []
    while not drive.finished:
        t += 1.0
        truth = drive.step(t)
        pos = Position(lat=truth.lat, lon=truth.lon, speed=truth.speed_mps,
                       track=truth.heading_deg, hdop=1.0)  # fmt: skip
        runtime.update(t, pos, doors_open=truth.doors_open)
        tracker = runtime.tracker
        assert tracker is not None
        if switched_at is None and tracker.started:
            switched_at = t
            assert runtime.switch_feed(new, t) is False  # the trip is in progress: it waits
        if switched_at is not None and not tracker.finished:
            names.append([s.name for s in runtime.stops_ahead() or ()])
    assert switched_at is not None and names
    assert all(RENAMED not in n for n in names)  # the trip ran on its own timetable to its end
    assert runtime.tracker is not None and runtime.tracker.finished
    assert runtime.feed is new and not runtime.feed_pending
    # The next trip (the same one assigned again tomorrow, say) is planned on the new feed.
    runtime.assign(None, (), t)
    runtime.assign(TRIP, (), t)
    assert RENAMED in [s.name for s in runtime.stops_ahead() or ()]


def test_a_planned_trip_not_yet_started_moves_to_the_new_timetable_at_once() -> None:
    runtime = JourneyRuntime(parse_feed(gtfs_files()))
    runtime.assign(TRIP, (), time.time())
    assert RENAMED not in [s.name for s in runtime.stops_ahead() or ()]
    assert runtime.switch_feed(parse_feed(gtfs_files(last_stop=RENAMED)), time.time())
    assert RENAMED in [s.name for s in runtime.stops_ahead() or ()]
