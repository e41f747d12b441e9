"""Remote configuration (issue 14): central sets agent settings, the bus judges, applies, keeps
them and reports what it runs and what it refused.

Live tests: real mosquitto, central's service in a thread (`central_running`), real agents in
this event loop on a real agent.sqlite; the tools are the real CLI (`busfleet central config`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from busfleet.broker.launch import Broker
from busfleet.cli import main
from busfleet.commands.config import parse_value
from central import client
from central.config import CentralConfig
from onboard.agent import Agent
from onboard.config import (
    AgentConfig,
    BusSection,
    CanSection,
    GpsSection,
    MqttSection,
    TelemetrySection,
    parse_config,
)
from onboard.errors import ConfigError
from onboard.remote_config import judge
from protocols import codec, topics
from protocols.config_keys import refusal
from protocols.requests import ShowConfig
from protocols.schemas import DesiredState, ReportedState, Scalar
from tests.fleet_helpers import central_config, central_running, cli_conn

BUS = "bus-c1"
BASE = AgentConfig(mqtt=MqttSection(insecure_dev_broker=True))


def agent_config(broker: Broker, data_dir: Path) -> AgentConfig:
    config = AgentConfig(
        bus=BusSection(id=BUS, data_dir=str(data_dir)),
        mqtt=MqttSection(port=broker.port, backoff_max_s=1.0, insecure_dev_broker=True),
        gps=GpsSection(source="none"),
        can=CanSection(interface="none"),
        telemetry=TelemetrySection(interval_s=0.5),
    )
    off = {"enabled": False}
    return dataclasses.replace(
        config,
        display=dataclasses.replace(config.display, **off),
        driver=dataclasses.replace(config.driver, **off),
        ads=dataclasses.replace(config.ads, **off),
    )


async def until(check: Callable[[], object], what: str, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def cli(*argv: str) -> int:
    """The real CLI, on a thread (it runs its own event loop) while the agent runs in this one."""
    return await asyncio.to_thread(main, list(argv))


async def shown(config: CentralConfig) -> tuple[dict[str, Scalar], dict[str, dict[str, Scalar]]]:
    """`config show`'s answer: its result, and its rows by key."""
    # On a thread with its loop: a second aiomqtt client in the agent's loop wedged the
    # agent's link at its next publish (seen here).
    asking = client.ask(config, ShowConfig(bus=BUS), user="tester")
    reply = await asyncio.to_thread(asyncio.run, asking)
    assert reply.ok, reply.error
    return reply.result, {str(row["key"]): row for row in reply.tables["config"]}


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel the agent, again if need be: Python 3.11's asyncio.wait_for (inside aiomqtt's
    publish) swallows a cancellation that meets the PUBACK, and the link's reported-state task
    then waits on; seen here when a test stops the agent right after a change it reports."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=2)
    await asyncio.gather(task, return_exceptions=True)


# -- the rules, without a broker ------------------------------------------------------------------


def test_the_bus_judges_each_key_by_the_agent_config_schema_and_says_why() -> None:
    accepted, refused = judge(
        BASE,
        {
            "telemetry.send_every_s": 5,  # an int where seconds are floats, as agent.toml allows
            "portal.max_clients": 40,
            "telemetry.codec": "xml",
            "portal.max_clients_x": 3,
            "telemetry.batch_max": True,
            "outbox.budget_mb": -1.0,
            "mqtt.host": "203.0.113.9",
            "bus.data_dir": "/tmp",
            "journey.gtfs": "/tmp/feed.zip",
            "nosection": 1,
        },
    )
    assert accepted == {"telemetry.send_every_s": 5, "portal.max_clients": 40}
    assert "telemetry.codec 'xml' unknown" in refused["telemetry.codec"]
    assert "no such key" in refused["portal.max_clients_x"]
    assert "must be int, not bool" in refused["telemetry.batch_max"]
    assert "out of range" in refused["outbox.budget_mb"]
    assert refused["mqtt.host"].startswith("never set remotely: the link to city hall")
    assert refused["bus.data_dir"].startswith("never set remotely: the bus's identity")
    assert "path to a file" in refused["journey.gtfs"]
    assert refused["nosection"].startswith("not a key")


def test_agent_toml_meets_the_same_bounds_as_a_remote_setting() -> None:
    text = "[mqtt]\ninsecure_dev_broker = true\n[telemetry]\nsend_every_s = -1\n"
    with pytest.raises(ConfigError, match="out of range") as info:
        parse_config(text)
    assert info.value.key == "telemetry.send_every_s"
    with pytest.raises(ConfigError, match="must be int, not bool"):
        parse_config("[mqtt]\ninsecure_dev_broker = true\n[portal]\nmax_clients = true\n")


def test_central_and_the_bus_share_the_forbidden_keys_and_the_key_form() -> None:
    assert refusal("telemetry.send_every_s", 5.0) is None
    assert refusal("mqtt.keepalive_s", 20) is None  # the link's timing, not where it goes
    for key in ("mqtt.password_file", "mqtt.insecure_dev_broker", "bus.id", "portal.tls_key"):
        assert (refusal(key, "x") or "").startswith("never set remotely"), key
    assert refusal("Telemetry.send_every_s", 1) is not None
    assert refusal("telemetry.send_every_s", float("nan")) == "number out of range"
    assert refusal("display.language", [1]) == "not a text, number or true/false"


def test_the_tool_reads_values_as_agent_toml_does() -> None:
    assert parse_value("5") == 5 and parse_value("2.5") == 2.5
    assert parse_value("true") is True and parse_value('"5"') == "5"
    assert parse_value("nftables") == "nftables"
    with pytest.raises(ValueError, match="a setting is"):
        parse_value("[1, 2]")


# -- live: central, the broker, a real agent ------------------------------------------------------


async def rows_when(
    config: CentralConfig, ready: Callable[[dict[str, dict[str, Scalar]]], bool], what: str
) -> tuple[dict[str, Scalar], dict[str, dict[str, Scalar]]]:
    """`config show`'s answer once `ready(rows)` (central has the bus's report), else fail."""
    for _ in range(300):
        result, rows = await shown(config)
        if ready(rows):
            return result, rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {rows}")


def state_of(key: str, state: str) -> Callable[[dict[str, dict[str, Scalar]]], bool]:
    return lambda rows: rows.get(key, {}).get("state") == state


async def test_a_setting_reaches_the_bus_applies_live_and_is_reported_as_running(
    mosquitto: Broker, tmp_path: Path
) -> None:
    config = central_config(mosquitto, tmp_path / "central.sqlite")
    conn = cli_conn(mosquitto, tmp_path / "central.sqlite")
    with central_running(config):
        agent = Agent(agent_config(mosquitto, tmp_path / "bus"))
        task = asyncio.create_task(agent.run(), name="agent")
        try:
            await until(agent.link.connected.is_set, "the link")
            argv = [
                "telemetry.send_every_s=3",
                "telemetry.interval_s=0.25",
                "portal.max_clients=40",
            ]
            assert await cli("central", "config", "set", BUS, *argv, *conn) == 0
            await until(lambda: agent.link.config.telemetry.send_every_s == 3.0, "applied live")
            assert agent.telemetry.interval_s == 0.25  # the sampling loop has the new interval
            assert agent.config.portal.max_clients == 40
            keys = [a.partition("=")[0] for a in argv]
            result, rows = await rows_when(
                config, lambda r: all(state_of(k, "running")(r) for k in keys), "running"
            )
            assert rows["telemetry.send_every_s"]["running"] == 3.0
            assert rows["telemetry.interval_s"]["running"] == 0.25
            assert rows["portal.max_clients"] == {
                "key": "portal.max_clients",
                "desired": 40,
                "running": 40,
                "state": "running",
                "reason": "",
            }
            assert result["pending_restart"] == 0
            assert not task.done(), "live settings need no restart"
            # Unset: agent.toml's value runs again, live.
            unset = ("--unset", "telemetry.send_every_s")
            assert await cli("central", "config", "set", BUS, *unset, *conn) == 0
            await until(lambda: agent.link.config.telemetry.send_every_s == 10.0, "unset live")
        finally:
            await stop(task)


async def test_a_bad_value_and_a_forbidden_key_are_refused_and_reported_with_the_reason(
    mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = central_config(mosquitto, tmp_path / "central.sqlite")
    conn = cli_conn(mosquitto, tmp_path / "central.sqlite")
    with central_running(config):
        agent = Agent(agent_config(mosquitto, tmp_path / "bus"))
        before = agent.config
        task = asyncio.create_task(agent.run(), name="agent")
        try:
            await until(agent.link.connected.is_set, "the link")
            # Central refuses a forbidden key itself: nothing is written, exit status 2.
            capsys.readouterr()
            assert await cli("central", "config", "set", BUS, "mqtt.host=203.0.113.9", *conn) == 2
            assert "mqtt.host: never set remotely" in capsys.readouterr().err
            # Values are the bus's to judge: central sends them, the bus refuses.
            bad = ["telemetry.send_every_s=fast", "portal.max_clients=0", "gps.max_hdop=5"]
            assert await cli("central", "config", "set", BUS, *bad, *conn) == 0
            _, rows = await rows_when(config, state_of("portal.max_clients", "refused"), "refused")
            assert rows["telemetry.send_every_s"]["state"] == "refused"
            assert "must be float, not str" in str(rows["telemetry.send_every_s"]["reason"])
            assert "out of range (1 to 100000)" in str(rows["portal.max_clients"]["reason"])
            assert rows["gps.max_hdop"]["state"] == "running"  # the good one beside them runs
            assert agent.config.telemetry == before.telemetry
            assert agent.config.portal == before.portal
            assert agent.quality.limits.max_hdop == 5.0
            assert await cli("central", "config", "show", BUS, *conn) == 0
            out = capsys.readouterr().out
            assert "portal.max_clients" in out and "refused" in out and "out of range" in out
            # A desired document that says forbidden keys anyway (an old central, a forged
            # one): the bus refuses them too and runs on as it was.
            applied = agent.outcome.applied
            assert applied is not None
            forged = {**applied.config, "bus.data_dir": "/tmp/x", "mqtt.insecure_dev_broker": False}
            doc = DesiredState(bus=BUS, version=applied.version + 1, config=forged)
            await asyncio.to_thread(
                _publish_retained, mosquitto, topics.desired(BUS), codec.encode(doc)
            )
            await until(lambda: "bus.data_dir" in agent.remote_config.refused, "refused")
            state = codec.decode(ReportedState, agent._reported_payload())
            assert state.config_refused["bus.data_dir"].startswith("never set remotely")
            assert "TLS" in state.config_refused["mqtt.insecure_dev_broker"]
            assert not {"bus.data_dir", "mqtt.insecure_dev_broker"} & set(state.config)
            assert agent.config.bus == before.bus and agent.config.mqtt == before.mqtt
            assert state.error is None and state.version == doc.version  # the rest applies
        finally:
            await stop(task)


def _publish_retained(broker: Broker, topic: str, payload: bytes) -> None:
    """Publish as another client would (paho, on its own thread: not the agent's loop)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    forger = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    forger.connect(broker.host, broker.port)
    forger.loop_start()
    try:
        forger.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        forger.loop_stop()
        forger.disconnect()


async def test_a_setting_that_needs_a_restart_restarts_the_agent_and_is_kept_through_restarts(
    mosquitto: Broker, tmp_path: Path
) -> None:
    config = central_config(mosquitto, tmp_path / "central.sqlite")
    conn = cli_conn(mosquitto, tmp_path / "central.sqlite")
    data_dir = tmp_path / "bus"
    with central_running(config):
        agent = Agent(agent_config(mosquitto, data_dir))
        task = asyncio.create_task(agent.run(), name="agent")
        try:
            await until(agent.link.connected.is_set, "the link")
            settings = ["telemetry.send_every_s=4", "ads.lookahead_days=5", "mqtt.keepalive_s=20"]
            assert await cli("central", "config", "set", BUS, *settings, *conn) == 0
            # No trip runs: the agent restarts by itself (as on central's restart command).
            await until(task.done, "the agent's restart for ads.lookahead_days")
            assert task.exception() is None and not task.cancelled()
        finally:
            await stop(task)
        # systemd runs it again: a new agent on the same agent.sqlite and the same agent.toml,
        # built before it reaches the broker, runs the kept settings.
        agent = Agent(agent_config(mosquitto, data_dir))
        assert agent.config.ads.lookahead_days == 5
        assert agent.config.mqtt.keepalive_s == 20
        assert agent.config.telemetry.send_every_s == 4.0
        assert agent.remote_config.pending == set()
        task = asyncio.create_task(agent.run(), name="agent again")
        try:
            await until(agent.link.connected.is_set, "the link")
            _, rows = await rows_when(config, state_of("ads.lookahead_days", "running"), "running")
            assert rows["ads.lookahead_days"]["running"] == 5
            assert rows["mqtt.keepalive_s"]["running"] == 20
            # A bad value now: refused, and the last good one runs on (and is kept).
            bad = "telemetry.send_every_s=-2"
            assert await cli("central", "config", "set", BUS, bad, *conn) == 0
            await until(lambda: "telemetry.send_every_s" in agent.remote_config.refused, "refused")
            assert agent.config.telemetry.send_every_s == 4.0
            assert not task.done()
        finally:
            await stop(task)
    # A third start, with no central to hear from: the last good configuration still runs.
    agent = Agent(agent_config(mosquitto, data_dir))
    try:
        assert agent.config.telemetry.send_every_s == 4.0
        assert agent.config.ads.lookahead_days == 5
    finally:
        agent.store.close()


async def test_a_restart_waits_until_no_trip_is_running(mosquitto: Broker, tmp_path: Path) -> None:
    agent = Agent(agent_config(mosquitto, tmp_path / "bus"))
    try:
        agent.remote_config.offer({"ads.lookahead_days": 7}, agent)
        assert agent.remote_config.pending == {"ads.lookahead_days"}
        assert agent.counters()["config_pending"] == 1
        answers = iter([True, True, False])
        asked: list[bool] = []

        def trip_running() -> bool:
            asked.append(next(answers))
            return asked[-1]

        restart = agent.remote.restart_requested
        await asyncio.wait_for(agent.remote_config.run(restart, trip_running, poll_s=0.01), 10)
        assert restart.is_set() and asked == [True, True, False]
    finally:
        agent.store.close()
