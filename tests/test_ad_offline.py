"""Six hours without an uplink: the bus plays on from its cache, and after reconnecting every
play reaches central exactly once and shows up in the advertisers' report.

Real pieces throughout: central's media library served over HTTP, the playlist pushed as the
bus's desired state, the agent (with a restart in the middle of the outage), its SQLite
outbox, a real mosquitto, central's ingest, and the report. Only the player's clock is
simulated, so six hours take a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web

from busfleet.broker.launch import free_port
from central.config import CentralConfig
from central.http.media import media_routes
from central.media import MediaLibrary
from central.playlists import build_playlist, desired_with_playlist, save_playlist
from central.reports import plays_report
from central.service.service import CentralService
from central.store.db import CentralStore
from onboard.ads import Player, PlayRecord
from onboard.agent import Agent
from onboard.config import parse_config
from protocols.ads.playlist import Circle, Playlist, Schedule, Target
from tests.ads_helpers import item_for, png
from tests.fleet_helpers import broker_on, rows

TZ = "Australia/Brisbane"
START = dt.datetime(2025, 6, 2, 6, 0, tzinfo=dt.timezone(dt.timedelta(hours=10))).timestamp()
HOURS = 6


def agent_for(tmp_path: Path, port: int) -> Agent:
    config = parse_config(
        f'[bus]\nid = "bus-a"\ndata_dir = "{tmp_path / "bus-a"}"\n'
        f"[mqtt]\nport = {port}\nbackoff_max_s = 1.0\ninsecure_dev_broker = true\n"
        '[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
        "[display]\nenabled = false\n"
    )
    return Agent(config)


def play_until(agent: Agent, start: float, end: float) -> float:
    """Drive the player's clock from `start` to `end` as the wall clock would."""
    assert agent.ads is not None
    t = start
    while t < end:
        t = agent.ads.player.step(t)
    return t


async def test_six_hours_offline_every_play_reaches_central_exactly_once(tmp_path: Path) -> None:
    # City hall: three ads in the library, a playlist of them, pushed to bus-a.
    store = CentralStore(tmp_path / "central.sqlite")
    library = MediaLibrary(store, tmp_path / "media")
    for name, colour in (("red.png", (255, 0, 0)), ("green.png", (0, 255, 0)),
                         ("blue.png", (0, 0, 255))):  # fmt: skip
        library.import_bytes(png(32, 16, colour), name)
    app = web.Application()
    app.add_routes(media_routes(library.root))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    http_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    source = {
        "id": "city", "timezone": TZ,
        "items": [{"id": "red", "media": "red.png", "duration_s": 10},
                  {"id": "green", "media": "green.png", "duration_s": 15},
                  {"id": "blue", "media": "blue.png", "duration_s": 20}],
        "schedules": [
            {"id": "morning", "items": ["blue"], "priority": 5, "max_plays_per_hour": 30,
             "windows": [{"start": "07:00", "end": "09:00"}]},
            {"id": "base", "items": ["red", "green"]},
        ],
    }  # fmt: skip
    playlist = save_playlist(
        store, build_playlist(library, source, f"http://127.0.0.1:{http_port}/media")
    )
    _, desired = desired_with_playlist(store, "bus-a", playlist)
    store.close()

    # The bus gets its desired state and the media while it still has an uplink...
    mqtt_port = free_port()
    agent = agent_for(tmp_path, mqtt_port)
    assert agent.ads is not None
    agent.on_desired(desired)
    async with aiohttp.ClientSession() as session:
        assert await agent.ads.sync_once(session)
    await runner.cleanup()  # ...and then loses it: no media server, no broker from here on.

    # Six hours of plays, with an agent restart (a power cut) after three.
    t = play_until(agent, START, START + 3 * 3600)
    agent.outbox.close()
    agent = agent_for(tmp_path, mqtt_port)
    assert agent.ads is not None and agent.ads.active == playlist  # from disk, offline
    play_until(agent, t, START + HOURS * 3600)
    written = [
        json.loads(body)["data"]
        for (body,) in agent.outbox.db.execute(
            "SELECT body FROM outbox WHERE stored = 0 ORDER BY seq"
        ).fetchall()
    ]
    plays = [d for d in written if "item" in d]
    assert len(plays) > HOURS * 3600 / 20  # it kept playing all along
    assert plays[-1]["end"] >= START + HOURS * 3600 - 20
    gaps = sorted(b["start"] - a["end"] for a, b in itertools.pairwise(plays))
    # Back to back; the power cut lost the play that was on screen (it never ended).
    assert gaps[-2] < 1.0 and gaps[-1] <= 20
    by_item = Counter(p["item"] for p in plays)
    assert set(by_item) == {"red", "green", "blue"}

    # The uplink is back: broker, central and the bus's link.
    db = tmp_path / "central.sqlite"
    with broker_on(tmp_path / "mq", mqtt_port):
        central = CentralService(CentralConfig(db=str(db), mqtt_port=mqtt_port))
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(central.run()), tg.create_task(agent.link.run())]
            try:
                async with asyncio.timeout(90):
                    # Receipts say central stored everything; the outbox is SQLite: poll it.
                    while agent.outbox.count() > 0:  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
            finally:
                for task in tasks:
                    task.cancel()
    with contextlib.suppress(Exception):
        agent.outbox.close()

    stored = [json.loads(d) for (d,) in rows(db, "SELECT data FROM events WHERE kind = 'play'")]
    assert len(stored) == len(plays)
    assert sorted((p["item"], p["start"]) for p in stored) == sorted(
        (p["item"], p["start"]) for p in plays
    )
    # What an advertiser is billed for adds up to the same plays.
    store = CentralStore(db)
    report = plays_report(store, dt.date(2025, 6, 2), dt.date(2025, 6, 2), TZ)
    store.close()
    assert {r.item: r.plays for r in report} == dict(by_item)
    assert {r.bus for r in report} == {"bus-a"}


def test_a_proof_of_play_says_where_and_coordinates_only_when_enabled() -> None:
    fence = Circle(id="esplanade", lat=-16.92, lon=145.78, radius_m=300)
    items = [item_for("geo", b"x" * 10, 12.0), item_for("base", b"y" * 10, 8.0)]
    pl = Playlist(
        id="p",
        items=items,
        schedules=[
            Schedule(id="g", items=["geo"], priority=3, target=Target(fences=[fence])),
            Schedule(id="b", items=["base"]),
        ],
    )
    for record_location in (False, True):
        records: list[PlayRecord] = []
        player = Player("bus-a", have={i.media for i in items}, on_play=records.append,
                        record_location=record_location)  # fmt: skip
        player.switch(pl)
        player.set_route("R1", "stop-42")
        t = player.step(START)  # outside the fence: the base ad
        player.update_position(-16.92, 145.78, 5.0)  # in the esplanade, accurate
        t = player.step(t)
        player.step(t)
        assert [(r.item, r.route, r.stop_area) for r in records] == [
            ("base", "R1", "stop-42"), ("geo", "R1", "stop-42")
        ]  # fmt: skip
        data = records[1].data()
        assert (data["start"], data["end"]) == (START + 8, START + 20)
        assert ("lat" in data) == record_location and ("lon" in data) == record_location


def test_a_clock_set_back_drops_the_play_on_screen_instead_of_proving_it() -> None:
    items = [item_for("a", b"a" * 10, 10.0)]
    pl = Playlist(id="p", items=items, schedules=[Schedule(id="s", items=["a"])])
    records: list[PlayRecord] = []
    player = Player("bus-a", have={items[0].media}, on_play=records.append)
    player.switch(pl)
    player.step(START)
    player.step(START - 3600)  # the GPS set the clock an hour back mid-play
    player.step(START - 3600 + 10)
    assert [(r.start, r.end) for r in records] == [(START - 3600, START - 3590)]
