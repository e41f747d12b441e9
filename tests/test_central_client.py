"""Asking central (central/client.py): the CLI tools and the dashboard send typed requests to the
running service, which alone writes desired state and publishes to buses."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from busfleet.broker.launch import Broker, free_port
from busfleet.cli import main
from central import client, mqtt
from central.errors import NoCentral
from protocols import codec, topics
from protocols.requests import CentralPresence, Detail, ImportGtfs, Request
from protocols.schemas import DesiredState
from tests.fleet_helpers import central_config, central_running, cli_conn, wait_for

TOOLS = [
    ["central", "assign", "bus-01", "--route", "R1"],
    ["central", "message", "--de", "Baustelle", "--all"],
    ["central", "withdraw", "m-1"],
    ["central", "command", "bus-01", "restart"],
    ["central", "message-driver", "bus-01", "Please call dispatch"],
    ["central", "divert", "create", "R1", "--skip", "S1"],
    ["central", "divert", "cancel", "d-1"],
    ["central", "playlist", "assign", "sale", "bus-01"],
    ["central", "playlist", "import", "p.toml"],
    ["central", "media", "import", "a.png"],
]
# The read-only ones ask too (the service alone opens the database).
TOOLS += [
    ["central", "commands"],
    ["central", "messages", "--status", "active"],
    ["central", "driver-log", "--bus", "bus-01"],
    ["central", "divert", "list"],
    ["central", "media", "list"],
    ["central", "playlist", "list"],
    ["central", "playlist", "show", "spring"],
    ["central", "report", "plays", "--from", "2025-06-01", "--to", "2025-06-02"],
]


@pytest.mark.parametrize("argv", TOOLS, ids=lambda a: " ".join(a[1:3]))
def test_a_tool_with_no_central_running_says_so_in_one_line_and_exits_2(
    argv: list[str], mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main([*argv, *cli_conn(mosquitto, tmp_path / "c.sqlite")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.strip().splitlines()
    assert "no central is running" in line and "busfleet central serve" in line
    assert time.monotonic() - started < client.PRESENCE_WAIT_S + 5  # no long hang
    assert not (tmp_path / "c.sqlite").exists()  # the tool did not open the database


def test_a_tool_with_no_broker_says_so_in_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--db", str(tmp_path / "c.sqlite"), "--mqtt-port", str(free_port())]
    assert main(["central", "assign", "bus-01", "--route", "R1", *conn]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "cannot reach the broker" in line


async def test_a_central_that_stopped_is_no_longer_asked(mosquitto: Broker, tmp_path: Path) -> None:
    config = central_config(mosquitto, tmp_path / "c.sqlite")
    with central_running(config):
        reply = await client.ask(config, Detail(bus="bus-01"), user="test")
        assert reply.ok and reply.result["bus"] == "bus-01"
    # It said offline on the way out (its last will says so if it dies instead).
    with pytest.raises(NoCentral, match="no central is running"):
        await client.ask(config, Detail(bus="bus-01"), user="test", presence_wait_s=1.0)


async def test_central_presence_is_retained_per_worker_and_its_will_says_offline(
    mosquitto: Broker, tmp_path: Path
) -> None:
    config = central_config(mosquitto, tmp_path / "c.sqlite", client_id="central-w1")
    seen: list[CentralPresence] = []
    with central_running(config):
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="watch") as w:
            await w.subscribe(topics.all_central_presence(), qos=1)
            async with asyncio.timeout(10):
                async for message in w.messages:
                    assert message.topic.value == topics.central_presence("central-w1")
                    assert isinstance(message.payload, bytes) and message.retain
                    seen.append(codec.decode(CentralPresence, message.payload))
                    break
    assert [(p.client_id, p.online) for p in seen] == [("central-w1", True)]


def test_no_tool_publishes_to_a_bus_only_the_service_does(
    mosquitto: Broker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every publish a tool makes is a request to central; the bus's desired state still
    arrives, retained: the service published it (on its paho client, not aiomqtt's)."""
    published: list[str] = []
    real = aiomqtt.Client.publish

    async def spy(self: aiomqtt.Client, topic: str, *args: Any, **kwargs: Any) -> None:
        published.append(topic)
        await real(self, topic, *args, **kwargs)

    monkeypatch.setattr(aiomqtt.Client, "publish", spy)
    db = tmp_path / "central.sqlite"
    conn = cli_conn(mosquitto, db)
    with central_running(central_config(mosquitto, db)):
        assert main(["central", "assign", "bus-01", "--route", "R1", *conn]) == 0
        assert main(["central", "message", "--de", "Hallo", "--bus", "bus-01", *conn]) == 0
        assert main(["central", "command", "bus-01", "restart", *conn]) == 0
        assert main(["central", "divert", "create", "R1", "--skip", "S1", *conn]) == 0
    capsys.readouterr()
    assert published and all(
        re.fullmatch(r"busfleet/v1/dispatch/[^/]+/request", t) for t in published
    )
    doc = asyncio.run(_retained(mosquitto, topics.desired("bus-01")))
    assert doc.assignment is not None and doc.assignment.route_id == "R1"
    assert [m.text_de for m in doc.messages] == ["Hallo"] and len(doc.diversions) == 1


async def _retained(broker: Broker, topic: str) -> DesiredState:
    async with aiomqtt.Client(broker.host, broker.port, identifier="t-retained") as c:
        await c.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            async for message in c.messages:
                assert isinstance(message.payload, bytes)
                return codec.decode(DesiredState, message.payload)
    raise AssertionError("nothing retained")


def test_central_does_not_subscribe_to_its_own_desired_documents() -> None:
    from central.service.service import SUBSCRIPTIONS

    assert topics.Kind.DESIRED not in SUBSCRIPTIONS


async def test_the_backoff_waits_grow_with_jitter_under_the_cap_and_restart_after_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    retry = mqtt.backoff(cap_s=5.0)
    attempts = []
    async for attempt in retry:
        attempts.append(attempt)
        if attempt == 12:
            break
    assert attempts == list(range(13)) and len(slept) == 12  # the first try waits for nothing
    assert all(0.0 <= s <= min(5.0, 1.5**n) for n, s in enumerate(slept))
    retry.reset()
    assert await retry.__anext__() == 0 and len(slept) == 12


def test_fleet_state_hears_of_a_new_desired_version_from_the_writer(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """No broker round trip: the fleet entry shows the new desired version at once."""
    from tests.fleet_helpers import FleetWatcher

    db = tmp_path / "central.sqlite"
    watcher = FleetWatcher(mosquitto)
    try:
        with central_running(central_config(mosquitto, db)):
            conn = cli_conn(mosquitto, db)
            assert main(["central", "assign", "bus-07", "--route", "R1", *conn]) == 0
            assert main(["central", "assign", "bus-07", "--route", "R2", *conn]) == 0
            wait_for(
                lambda: (e := watcher.entries.get("bus-07")) and e.desired_version == 2,
                10,
                "the fleet entry at desired version 2",
            )
    finally:
        watcher.close()


def test_a_slow_request_does_not_hold_up_a_quick_one_behind_it(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """A GTFS import (seconds, on a thread) is under way; a look at a bus is answered first."""
    from tests.test_gtfs_import import _bench_module

    feed = tmp_path / "big"
    _bench_module().write_feed(feed, 800_000)  # seconds to import, even on a fast machine
    config = central_config(mosquitto, tmp_path / "central.sqlite")

    async def both() -> list[str]:
        answered: list[str] = []

        async def one(name: str, request: Request) -> None:
            reply = await requests.ask(client.envelope(request))
            assert reply.ok, reply.error
            answered.append(name)

        async with client.connect(config, "alice") as requests:
            with client.zipped(feed) as archive:
                upload = await client.upload(lambda r: requests.ask(client.envelope(r)), archive)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(one("import", ImportGtfs(upload=upload)))
                await asyncio.sleep(0.2)  # the import is on its thread by now
                tg.create_task(one("detail", Detail(bus="bus-01")))
        return answered

    with central_running(config):
        assert asyncio.run(both()) == ["detail", "import"]
