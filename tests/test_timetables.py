"""Timetable versions at central (issue 14): each import a version, what changed between two,
publishing to a bus, a group or all (newcomers too), the package over HTTP with Range, and
assignments checked against the version the bus runs."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import aiohttp
import aiomqtt
import pytest
from aiohttp import web

from busfleet.broker.launch import Broker, free_port
from busfleet.cli import main
from central.config import CentralConfig
from central.gtfs_import import import_gtfs
from central.http.server import serving
from central.http.timetables import timetable_routes
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store.pg_store import open_store
from central.timetables import package_path, timetable_root
from protocols import codec, topics
from protocols.gtfs.package import read_package
from protocols.requests import (
    Assign,
    AssignPlaylist,
    DeleteGroup,
    ListTimetables,
    PublishTimetable,
    SendMessage,
    SetGroup,
    ShowGroup,
    ShowTimetable,
)
from protocols.schemas import DesiredState, Presence
from tests.fleet_helpers import central_config, central_running, cli_conn
from tests.test_dispatch import ask
from tests.test_gtfs_import import FEED, write_feed

T0 = 1_800_000_000.0
# v2: stop B renamed, trip T2 five minutes later; v3: v2 and a new trip T3.
V2 = {
    "stops.txt": FEED["stops.txt"].replace("B,Stop B,", "B,Stop B (new),"),
    "stop_times.txt": FEED["stop_times.txt"]
    .replace("T2,08:00:00,08:00:00", "T2,08:05:00,08:05:00")
    .replace("T2,08:10:00,08:10:00", "T2,08:15:00,08:15:00")
    .replace("T2,08:20:00,08:21:00", "T2,08:25:00,08:26:00")
    .replace("T2,08:30:00,08:30:00", "T2,08:35:00,08:35:00"),
}
V3 = {
    **V2,
    "trips.txt": FEED["trips.txt"] + "R1,WK,T3,0,BL2\n",
    "stop_times.txt": V2["stop_times.txt"] + "T3,09:00:00,09:00:00,A,1\nT3,09:10:00,09:10:00,D,2\n",
}


@pytest.fixture
def dispatch(tmp_path: Path, central_db: str) -> Dispatch:
    """The tests taking it run on both backends (SQLite and PostgreSQL)."""
    config = dataclasses.replace(
        CentralConfig(),
        db=central_db,
        media_dir=str(tmp_path / "media"),
        http_port=8080,  # the URL buses fetch from
    )
    store = open_store(config.db)
    return Dispatch(store, config, AlarmCenter(store))


def _import(d: Dispatch, folder: Path, **files: str) -> int:
    result = import_gtfs(
        d.store, write_feed(folder, **files), now=T0, timetable_dir=timetable_root(d.config)
    )
    return int(result.summary["timetable_version"])


def _desired(d: Dispatch, bus: str) -> DesiredState:
    stored = d.store.desired(bus)
    assert stored is not None, bus
    return codec.decode(DesiredState, stored[1])


async def test_each_import_is_a_version_and_show_says_what_changed_against_the_previous(
    dispatch: Dispatch, tmp_path: Path
) -> None:
    assert _import(dispatch, tmp_path / "v1") == 1
    assert _import(dispatch, tmp_path / "v2", **V2) == 2
    reply, _ = await ask(dispatch, ShowTimetable(version=2))
    assert reply.ok, reply.error
    [shown] = reply.records
    assert shown["previous"] == 1
    assert shown["routes"] == {
        "added": 0, "removed": 0, "changed": 0,
        "added_ids": [], "removed_ids": [], "changed_ids": [],
    }  # fmt: skip
    assert (shown["stops"]["changed"], shown["stops"]["changed_ids"]) == (1, ["B"])
    assert (shown["trips"]["changed"], shown["trips"]["changed_ids"]) == (1, ["T2"])
    assert shown["trips"]["added"] == shown["trips"]["removed"] == 0
    # The package on disk is the one the row names, and a bus reads the new stop name from it.
    data = package_path(timetable_root(dispatch.config), shown["sha256"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == shown["sha256"] and len(data) == shown["size"]
    assert {s.stop_id: s.name for s in read_package(data).stops.values()}["B"] == "Stop B (new)"
    listed, _ = await ask(dispatch, ListTimetables())
    assert [r["version"] for r in listed.records] == [1, 2]
    assert listed.records[0]["sha256"] != listed.records[1]["sha256"]
    refused, _ = await ask(dispatch, ShowTimetable(version=9))
    assert not refused.ok and "no timetable version 9" in refused.error


async def test_publishing_to_a_bus_and_a_group_puts_the_ref_in_their_desired_documents(
    dispatch: Dispatch, tmp_path: Path
) -> None:
    _import(dispatch, tmp_path / "v1")
    _import(dispatch, tmp_path / "v2", **V2)
    reply, _ = await ask(dispatch, SetGroup(name="depot", buses=["bus-2", "bus-3"]))
    assert reply.ok and reply.result["buses"] == 2
    valid = T0 + 60
    reply, out = await ask(
        dispatch, PublishTimetable(version=2, valid_from=valid, to=["bus-1", "group:depot"])
    )
    assert reply.ok, reply.error
    assert sorted(r["bus"] for r in reply.tables["buses"]) == ["bus-1", "bus-2", "bus-3"]
    published = {topic: body for topic, body, retain in out if retain}
    sha = package_path  # the file the ref names is served from here
    for bus in ("bus-1", "bus-2", "bus-3"):
        ref = codec.decode(DesiredState, published[topics.desired(bus)]).timetable
        assert ref is not None and ref.version == 2 and ref.valid_from == valid
        assert ref.url == f"http://127.0.0.1:8080/timetables/{ref.sha256}.zip"
        assert sha(timetable_root(dispatch.config), ref.sha256).stat().st_size == ref.size
    assert dispatch.store.desired("bus-4") is None
    # A later change of the document keeps the timetable.
    await ask(dispatch, Assign(bus="bus-1", trip="T1"))
    after = _desired(dispatch, "bus-1")
    assert after.assignment is not None and after.timetable is not None
    assert after.timetable.version == 2
    # A bad target is refused and nothing is published.
    refused, out = await ask(dispatch, PublishTimetable(version=2, to=["group:nope"]))
    assert not refused.ok and "no group 'nope'" in refused.error and out == []
    shown, _ = await ask(dispatch, ShowGroup(name="depot"))
    assert shown.records == [{"name": "depot", "updated": T0, "buses": ["bus-2", "bus-3"]}]
    gone, _ = await ask(dispatch, DeleteGroup(name="depot"))
    assert gone.ok
    missing, _ = await ask(dispatch, ShowGroup(name="depot"))
    assert not missing.ok


async def test_a_bus_added_to_a_group_gets_its_newer_timetable_and_keeps_it_when_it_leaves(
    dispatch: Dispatch, tmp_path: Path
) -> None:
    _import(dispatch, tmp_path / "v1")
    _import(dispatch, tmp_path / "v2", **V2)
    _import(dispatch, tmp_path / "v3", **V3)
    await ask(dispatch, SetGroup(name="depot", buses=["bus-1"]))
    assert (await ask(dispatch, PublishTimetable(version=1, to=["bus-2", "bus-3"])))[0].ok
    assert (await ask(dispatch, PublishTimetable(version=2, to=["group:depot"])))[0].ok
    assert (await ask(dispatch, PublishTimetable(version=3, to=["bus-3"])))[0].ok
    # bus-2 joins: the group's v2 is newer than its own v1; bus-3's own v3 is newer than it.
    reply, out = await ask(dispatch, SetGroup(name="depot", buses=["bus-1", "bus-2", "bus-3"]))
    assert reply.ok and reply.result["given_timetable"] == 1
    sent = {topic for topic, _body, retain in out if retain}
    assert sent == {topics.desired("bus-2")}
    versions = {b: _desired(dispatch, b).timetable for b in ("bus-1", "bus-2", "bus-3")}
    assert {b: r.version if r else None for b, r in versions.items()} == {
        "bus-1": 2,
        "bus-2": 2,
        "bus-3": 3,
    }
    # Leaving the group takes nothing away; setting it again gives nothing twice.
    reply, out = await ask(dispatch, SetGroup(name="depot", buses=["bus-1"]))
    assert reply.ok and reply.result["given_timetable"] == 0 and out == []
    reply, out = await ask(dispatch, SetGroup(name="depot", buses=["bus-1", "bus-2"]))
    assert reply.result["given_timetable"] == 0 and out == []
    bus2 = _desired(dispatch, "bus-2").timetable
    assert bus2 is not None and bus2.version == 2


async def test_an_assignment_is_checked_against_the_version_the_bus_runs(
    dispatch: Dispatch, tmp_path: Path
) -> None:
    _import(dispatch, tmp_path / "v1")
    _import(dispatch, tmp_path / "v2", **V2)
    assert (await ask(dispatch, PublishTimetable(version=2, to=["bus-1"])))[0].ok
    _import(dispatch, tmp_path / "v3", **V3)  # T3 and block BL2 exist from v3 on
    refused, out = await ask(dispatch, Assign(bus="bus-1", trip="T3"))
    assert not refused.ok and out == []
    assert "unknown trip 'T3'" in refused.error and "timetable version 2" in refused.error
    refused, _ = await ask(dispatch, Assign(bus="bus-1", block="BL2"))
    assert not refused.ok and "unknown block 'BL2'" in refused.error
    refused, _ = await ask(dispatch, Assign(bus="bus-1", route="R9"))
    assert not refused.ok and "unknown route 'R9'" in refused.error
    assert (await ask(dispatch, Assign(bus="bus-1", trip="T2")))[0].ok
    # A bus with no published version is checked against the latest import.
    assert (await ask(dispatch, Assign(bus="bus-9", trip="T3")))[0].ok
    refused, _ = await ask(dispatch, Assign(bus="bus-9", trip="nope"))
    assert not refused.ok and "unknown trip 'nope'" in refused.error


async def test_a_playlist_and_a_message_can_target_a_group(
    dispatch: Dispatch, tmp_path: Path
) -> None:
    await ask(dispatch, SetGroup(name="north", buses=["bus-5", "bus-6"]))
    reply, out = await ask(dispatch, AssignPlaylist(bus="group:north", playlist=""))
    assert reply.ok, reply.error
    assert sorted(t for t, _, retain in out if retain) == [
        topics.desired("bus-5"),
        topics.desired("bus-6"),
    ]
    reply, out = await ask(dispatch, SendMessage(text_de="Umleitung", targets=["group:north"]))
    assert reply.ok, reply.error
    for bus in ("bus-5", "bus-6"):
        assert [m.text_de for m in _desired(dispatch, bus).messages] == ["Umleitung"]


def test_a_bus_central_first_hears_of_after_a_publication_to_all_gets_it(
    mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "central.sqlite"
    conn = cli_conn(mosquitto, db)
    port = free_port()
    config = central_config(mosquitto, db, http_port=port)
    feeds = [write_feed(tmp_path / "v1"), write_feed(tmp_path / "v2", **V2)]
    with central_running(config):
        for feed in feeds:  # uploaded to the running central, which records the versions
            assert main(["central", "import-gtfs", str(feed), *conn]) == 0
        capsys.readouterr()
        assert main(["central", "group", "set", "depot", "bus-2", *conn]) == 0
        assert main(["central", "timetable", "show", "2", *conn]) == 0
        shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert shown["stops"]["changed_ids"] == ["B"] and shown["trips"]["changed_ids"] == ["T2"]
        argv = ["central", "timetable", "publish", "2", "--to", "bus-1", "--to", "group:depot"]
        assert main([*argv, "--valid-from", "+1m", *conn]) == 0
        last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert sorted(last["buses"]) == ["bus-1", "bus-2"] and last["valid_from"] > time.time()
        assert main(["central", "timetable", "publish", "2", *conn]) == 0  # to all
        capsys.readouterr()
        # A bus that was never seen says it is online: central gives it the published version.
        docs = asyncio.run(_birth_and_desired(mosquitto, "bus-7", ["bus-1", "bus-2", "bus-7"]))
        assert main(["central", "assign", "bus-1", "--trip", "nope", *conn]) == 2
        assert "unknown trip 'nope'" in capsys.readouterr().err
    for bus in ("bus-1", "bus-2", "bus-7"):
        ref = docs[bus].timetable
        assert ref is not None and ref.version == 2, bus
    assert docs["bus-1"].timetable is not None
    ref = docs["bus-7"].timetable
    assert ref is not None and ref.url == f"http://127.0.0.1:{port}/timetables/{ref.sha256}.zip"
    # The package over HTTP: a download cut after 100 bytes resumes with a Range request.
    full, rest, status = asyncio.run(_download(timetable_root(config), port, ref.url, 100))
    assert status == 206 and rest == full[100:]
    assert hashlib.sha256(full).hexdigest() == ref.sha256 and len(full) == ref.size
    assert {s.stop_id: s.name for s in read_package(full).stops.values()}["B"] == "Stop B (new)"


async def _birth_and_desired(
    broker: Broker, newcomer: str, buses: list[str]
) -> dict[str, DesiredState]:
    """Publish `newcomer`'s birth, then collect the retained desired documents of `buses`
    until each carries a timetable."""
    docs: dict[str, DesiredState] = {}
    async with aiomqtt.Client(broker.host, broker.port, identifier="watch") as client:
        birth = Presence(bus=newcomer, online=True, session=1, t=time.time())
        await client.publish(topics.presence(newcomer), codec.encode(birth), qos=1, retain=True)
        for bus in buses:
            await client.subscribe(topics.desired(bus), qos=1)
        async with asyncio.timeout(30):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                doc = codec.decode(DesiredState, message.payload)
                if doc.timetable is not None:
                    docs[doc.bus] = doc
                if set(docs) == set(buses):
                    break
    return docs


async def _download(root: Path, port: int, url: str, cut: int) -> tuple[bytes, bytes, int]:
    app = web.Application()
    app.add_routes(timetable_routes(root))
    async with serving(app, "127.0.0.1", port), aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/zip"
            full = await response.read()
        async with session.get(url, headers={"Range": f"bytes={cut}-"}) as response:
            return full, await response.read(), response.status


def test_an_unknown_package_is_not_found(tmp_path: Path) -> None:
    async def get() -> int:
        port = free_port()
        app = web.Application()
        app.add_routes(timetable_routes(tmp_path))
        async with serving(app, "127.0.0.1", port), aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/timetables/{'0' * 64}.zip"
            async with session.get(url) as response:
                return response.status

    assert asyncio.run(get()) == 404
