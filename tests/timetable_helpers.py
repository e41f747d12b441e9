"""A tiny timetable that runs now, its packages, a bus agent that follows central's timetable."""

from __future__ import annotations

import asyncio
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from onboard.agent import Agent
from onboard.config import parse_config
from protocols import codec, topics
from protocols.geo import offset_m
from protocols.gtfs.package import build_package, package_sha256
from protocols.schemas import DesiredState, Event, TimetableRef

START = (-16.92, 145.77)
WAIT = 60.0  # generous: a busy machine is slow, a condition never met is a failure anyway


def _hms(s: int) -> str:
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def gtfs_files(*, last_stop: str = "Stop 3", lead_s: int = 600) -> dict[str, str]:
    """One trip T1 on route R1, four stops 1 km apart due east, leaving `lead_s` from now
    (agency time UTC, no calendar: it runs every day)."""
    points = [offset_m(*START, 0.0, i * 250.0) for i in range(13)]
    shape = "\n".join(f"E,{la:.6f},{lo:.6f},{i}" for i, (la, lo) in enumerate(points))
    names = ["Stop 0", "Stop 1", "Stop 2", last_stop]
    stops = "\n".join(
        f"S{i},{names[i]},{la:.6f},{lo:.6f}" for i, (la, lo) in enumerate(points[::4])
    )
    dep = int(time.time()) % 86400 + lead_s
    times = "\n".join(
        f"T1,{_hms(dep + 150 * k)},{_hms(dep + 150 * k)},S{k},{k + 1}" for k in range(4)
    )
    return {
        "agency.txt": "agency_name,agency_url,agency_timezone\nBus,http://x,UTC\n",
        "routes.txt": "route_id,route_short_name,route_long_name,route_type\nR1,1,Line,3\n",
        "shapes.txt": "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n" + shape + "\n",
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n" + stops + "\n",
        "trips.txt": "route_id,service_id,trip_id,trip_headsign,shape_id\nR1,ALL,T1,Town,E\n",
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
        + times
        + "\n",
    }


def live_feed(
    path: Path, *, depart: int, renamed: dict[str, str] | None = None, shift_s: int = 0
) -> Path:
    """A feed for simulated buses (tests/test_timetable_live.py), as a zip at `path`.

    Two trips of route R1 on one shape: T1 leaves stop S0 at `depart` (seconds of the UTC day),
    T2 ten minutes later (plus `shift_s`); four stops 500 m apart after a 4 km run-in from the
    depot, where the shape starts. A simulated bus starts at the depot: its trip is planned and
    tracked as it drives to S0, and it has not left S0 (the trip has not started) for minutes,
    whatever the machine's speed (at most 50 km/h: 4 km take 288 s). `renamed`: stop id -> name.
    """
    depot = offset_m(*START, -900.0, 0.0)
    points = [offset_m(*depot, 0.0, i * 250.0) for i in range(23)]  # 5.5 km due east
    shape = "\n".join(f"E,{la:.6f},{lo:.6f},{i}" for i, (la, lo) in enumerate(points))
    names = {f"S{k}": f"Stop {k}" for k in range(4)} | (renamed or {})
    stops = "\n".join(
        f"S{k},{names[f'S{k}']},{la:.6f},{lo:.6f}" for k, (la, lo) in enumerate(points[16::2])
    )
    times = []
    for trip, dep in (("T1", depart), ("T2", depart + 600 + shift_s)):
        times += [f"{trip},{_hms(dep + 120 * k)},{_hms(dep + 120 * k)},S{k},{k + 1}"
                  for k in range(4)]  # fmt: skip
    files = {
        "agency.txt": "agency_name,agency_url,agency_timezone\nBus,http://x,UTC\n",
        "routes.txt": "route_id,route_short_name,route_long_name,route_type\nR1,1,Line,3\n",
        "shapes.txt": "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n" + shape + "\n",
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n" + stops + "\n",
        "trips.txt": "route_id,service_id,trip_id,trip_headsign,shape_id\n"
        "R1,ALL,T1,Town,E\nR1,ALL,T2,Town,E\n",
        "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,"
        "start_date,end_date\nALL,1,1,1,1,1,1,1,20200101,20991231\n",
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
        + "\n".join(times)
        + "\n",
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def package(**kw: str | int) -> tuple[bytes, str]:
    data = build_package(gtfs_files(**kw))  # type: ignore[arg-type]
    return data, package_sha256(data)


def ref_for(
    version: int, data: bytes, base: str, *, valid_from: float | None = None, sha: str = ""
) -> TimetableRef:
    sha = sha or package_sha256(data)
    return TimetableRef(
        version=version, sha256=sha, size=len(data), url=f"{base}/{sha}", valid_from=valid_from
    )


def agent_for(data_dir: Path, port: int, *, gtfs: str = "") -> Agent:
    config = parse_config(
        f'[bus]\nid = "bus-t"\ndata_dir = "{data_dir}"\n'
        f"[mqtt]\nport = {port}\nbackoff_max_s = 1.0\ninsecure_dev_broker = true\n"
        '[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
        "[telemetry]\ninterval_s = 0.2\n"
        "[display]\nport = 0\n[driver]\nenabled = false\n[portal]\nenabled = false\n"
        f'[ads]\nenabled = false\n[journey]\ngtfs = "{gtfs}"\n'
    )
    return Agent(config)


async def publish_desired(port: int, desired: DesiredState) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topics.desired(desired.bus), codec.encode(desired), qos=1, retain=True)


async def until(what: str, check: Callable[[], bool], task: asyncio.Task[None]) -> None:
    """Wait until `check()` holds (the agent's task must keep running meanwhile)."""
    deadline = time.monotonic() + WAIT
    while not check():
        if task.done():
            task.result()
            raise AssertionError(f"the agent stopped before: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


def events_of(agent: Agent, kind: str) -> list[Event]:
    out = []
    for item in agent.outbox.pending(10_000):
        if item.kind.startswith("event"):
            event = codec.decode(Event, item.body)
            if event.kind == kind:
                out.append(event)
    return out


def shown_stops(agent: Agent) -> list[str]:
    """The stop names the passenger display shows now."""
    assert agent.display is not None
    return [s.name for s in agent.display.feed.state.next_stops]
