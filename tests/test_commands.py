"""Commands from central to a bus: id, expiry, acknowledgement tracked at central."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from busfleet.broker.launch import Broker, run_mosquitto
from central import client
from central.config import CentralConfig
from central.store.db import CentralStore
from onboard.link.commands import Commands
from onboard.link.outbox import Outbox
from protocols import codec, topics
from protocols.requests import Announce, BusCommand, Resend, Restart, SendCommand
from protocols.schemas import CentralStats, Command, Event
from tests.fleet_helpers import Procs, prefill, rows, stored_seqs, wait_for


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Procs]]:
    workdir = tmp_path_factory.mktemp("commands")
    with run_mosquitto(workdir / "mq") as broker:
        procs = Procs(workdir, broker.port)
        procs.central()
        procs.agent("bus-a")
        try:
            wait_for(lambda: reported(procs, "bus-a"), 30, "bus-a connected")
            yield broker, procs
        finally:
            procs.close()


def reported(procs: Procs, bus: str) -> bool:
    """Central has the bus's reported state: it is connected and subscribed."""
    return bool(rows(procs.workdir / "central.sqlite", "SELECT 1 FROM reported WHERE bus = ?", bus))


def central_config(procs: Procs) -> CentralConfig:
    return dataclasses.replace(
        CentralConfig(), db=str(procs.workdir / "central.sqlite"), mqtt_port=procs.port
    )


def send(procs: Procs, bus: str, command: BusCommand, ttl_s: float = 300.0) -> str:
    """Ask the running central to send a command, as `busfleet central command` does."""
    request = SendCommand(bus=bus, command=command, ttl_s=ttl_s)
    reply = asyncio.run(client.ask(central_config(procs), request, user="test"))
    assert reply.ok, reply.error
    return str(reply.result["id"])


def status_of(procs: Procs, cmd_id: str) -> dict[str, object] | None:
    store = CentralStore(procs.workdir / "central.sqlite")
    try:
        return next((c for c in store.commands() if c["id"] == cmd_id), None)
    finally:
        store.close()


def answered(procs: Procs, cmd_id: str) -> dict[str, object] | None:
    row = status_of(procs, cmd_id)
    return row if row is not None and row["status"] != "sent" else None


async def publish_raw(broker: Broker, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="raw-central") as c:
        await c.publish(topic, payload, qos=1)


def test_an_announcement_is_acknowledged_ok_at_central(live: tuple[Broker, Procs]) -> None:
    _, procs = live
    cmd_id = send(procs, "bus-a", Announce(text="Umleitung"))
    row = wait_for(lambda: answered(procs, cmd_id), 30, "the announce answer")
    assert row["status"] == "ok" and row["answered"] is not None


def test_a_command_with_bad_arguments_fails_with_a_reason(live: tuple[Broker, Procs]) -> None:
    broker, procs = live
    # Central cannot send this (its types refuse it): a central of another version might.
    now = time.time()
    cmd = Command(id="c-bad-args", name="resend", t=now, expires=now + 300, args={"since": "x"})
    store = CentralStore(procs.workdir / "central.sqlite")
    try:
        store.add_command(cmd.id, "bus-a", cmd.name, codec.encode_json(cmd.args), now, cmd.expires)
    finally:
        store.close()
    asyncio.run(publish_raw(broker, topics.command("bus-a"), codec.encode(cmd)))
    cmd_id = cmd.id
    row = wait_for(lambda: answered(procs, cmd_id), 30, "the resend answer")
    assert row["status"] == "failed" and "since" in str(row["reason"])


def test_a_command_nobody_answers_expires_at_central(live: tuple[Broker, Procs]) -> None:
    _, procs = live
    cmd_id = send(procs, "bus-offline", Restart(), ttl_s=1.0)
    row = wait_for(lambda: answered(procs, cmd_id), 30, "the expiry")
    assert row["status"] == "expired"


def central_counters(broker: Broker) -> dict[str, int]:
    """Central's counters as it last published them (retained, every 2 s)."""

    async def read() -> dict[str, int]:
        async with aiomqtt.Client(broker.host, broker.port) as c:
            await c.subscribe(topics.central_stats())
            async for message in c.messages:
                assert isinstance(message.payload, bytes)
                return codec.decode(CentralStats, message.payload).counters
        raise AssertionError("no stats")

    return asyncio.run(asyncio.wait_for(read(), 30))


def test_resend_sends_stored_history_again_and_central_still_stores_it_once(
    live: tuple[Broker, Procs],
) -> None:
    broker, procs = live
    # History the bus wrote two minutes ago and central has stored.
    t0 = time.time() - 120
    written = prefill(procs.workdir / "bus-a", 20, created=t0)
    agent_db = procs.workdir / "bus-a" / "agent.sqlite"
    wait_for(
        lambda: rows(agent_db, "SELECT COUNT(*) FROM outbox WHERE stored = 0") == [(0,)],
        30,
        "the bus to get central's receipts for its history",
    )
    assert set(written) <= set(stored_seqs(procs.workdir, "bus-a"))
    before = stored_seqs(procs.workdir, "bus-a")
    duplicates = central_counters(broker).get("duplicates", 0)
    since = t0 - 10  # all of that history, however long the receipts took
    cmd_id = send(procs, "bus-a", Resend(since=since))
    row = wait_for(lambda: answered(procs, cmd_id), 30, "the resend answer")
    assert row["status"] == "ok"
    (data,) = rows(
        procs.workdir / "central.sqlite",
        "SELECT data FROM events WHERE kind = 'cmd_ack' AND data LIKE ?",
        f"%{cmd_id}%",
    )
    assert codec.decode_json(data[0])["records"] >= len(written)
    # The resent records arrive and central counts each as a duplicate instead of storing it
    # again (a table keyed on (bus, seq) could not hold it twice anyway: the counter shows
    # that the resend happened and what central made of it).
    wait_for(
        lambda: central_counters(broker).get("duplicates", 0) >= duplicates + len(written),
        30,
        "central to count the resent records as duplicates",
    )
    after = stored_seqs(procs.workdir, "bus-a")
    assert set(before) <= set(after) and set(written) <= set(after)


def test_the_bus_runs_a_redelivered_command_once_and_answers_expired_when_late(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    ran: list[str] = []
    commands = Commands(outbox, {"announce": lambda c: ran.append(c.id) or _ok()})
    now = 1000.0
    fresh = codec.encode(Command(id="c1", name="announce", t=now, expires=now + 60))
    late = codec.encode(Command(id="c2", name="announce", t=now, expires=now - 1))
    assert commands.receive(fresh, now) is not None
    assert commands.receive(fresh, now) is None  # the broker delivered it twice
    result = commands.receive(late, now)
    assert result is not None and result.result == "expired"
    assert commands.receive(b"{garbage", now) is None and commands.rejected == 1
    assert ran == ["c1"]
    answers = [codec.decode(Event, p.body).data for p in outbox.pending(10)]
    assert [(a["id"], a["result"]) for a in answers] == [("c1", "ok"), ("c2", "expired")]


def _ok() -> object:
    from onboard.link.commands import Result

    return Result("ok")


def test_a_restart_command_is_answered_before_the_agent_restarts(tmp_path: Path) -> None:
    with run_mosquitto(tmp_path / "mq") as broker:
        procs = Procs(tmp_path, broker.port)
        try:
            procs.central()
            agent = procs.agent("bus-r")
            wait_for(lambda: reported(procs, "bus-r"), 30, "bus-r connected")
            cmd_id = send(procs, "bus-r", Restart())
            row = wait_for(lambda: answered(procs, cmd_id), 30, "the restart answer")
            assert row["status"] == "ok"
            assert agent.wait(15) == 0  # it stopped to be restarted (systemd: Restart=always)
        finally:
            procs.close()
