"""Hostile documents from the broker: the agent refuses them, says so, and runs on.

A desired document is retained at the broker: one that killed the agent would kill it again
at every start. Real mosquitto; the hostile documents are published retained before the agent
connects, the way a bad central (or a stolen central account) would leave them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker
from onboard.agent import Agent
from onboard.config import AgentConfig, BusSection, CanSection, GpsSection, MqttSection
from onboard.link.mqtt import MAX_INBOUND
from protocols import codec, topics
from protocols.schemas import Assignment, DesiredState, ReportedState, Stored

BUS = "bus-hostile"

DEEP = b'{"bus":"' + BUS.encode() + b'","version":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HUGE_VERSION = b'{"bus":"' + BUS.encode() + b'","version":' + str(2**63).encode() + b"}"
HOSTILE_DESIRED = {
    "nested 100,000 deep": DEEP,
    "version 2^63": HUGE_VERSION,
    "version 2^64": HUGE_VERSION.replace(str(2**63).encode(), str(2**64).encode()),
    "config integer 2^63": codec.encode(DesiredState(bus=BUS, version=1, config={"x": 2**63})),
}


class Watcher:
    """A paho client that publishes and keeps the bus's last reported state."""

    def __init__(self, broker: Broker) -> None:
        self.reported: ReportedState | None = None
        self.changed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.reported(BUS), qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, message: paho.MQTTMessage) -> None:
        self.reported = codec.decode(ReportedState, message.payload)
        self.changed.set()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def watcher(mosquitto: Broker) -> Iterator[Watcher]:
    w = Watcher(mosquitto)
    yield w
    w.close()


def agent_config(broker: Broker, data_dir: Path, protocol: int = 5) -> AgentConfig:
    config = AgentConfig(
        bus=BusSection(id=BUS, data_dir=str(data_dir)),
        mqtt=MqttSection(
            port=broker.port, protocol=protocol, backoff_max_s=1.0, insecure_dev_broker=True
        ),
        gps=GpsSection(source="none"),
        can=CanSection(interface="none"),
    )
    off = {"enabled": False}
    return dataclasses.replace(
        config,
        display=dataclasses.replace(config.display, **off),
        driver=dataclasses.replace(config.driver, **off),
        ads=dataclasses.replace(config.ads, **off),
    )


async def until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def reported(watcher: Watcher) -> ReportedState:
    assert watcher.reported is not None
    return watcher.reported


@pytest.mark.parametrize("name", sorted(HOSTILE_DESIRED))
async def test_a_hostile_retained_desired_document_is_refused_reported_and_a_good_one_applied(
    name: str, mosquitto: Broker, watcher: Watcher, tmp_path: Path
) -> None:
    watcher.publish(topics.desired(BUS), HOSTILE_DESIRED[name], retain=True)
    for session in range(2):  # the retained document comes again at the next start
        agent = Agent(agent_config(mosquitto, tmp_path / "agent"))
        task = asyncio.create_task(agent.run(), name="agent")
        try:
            await until(
                lambda: (
                    watcher.reported is not None
                    and reported(watcher).counters.get("desired_rejected") == 1
                ),
                "the rejection in the reported state",
            )
            state = reported(watcher)
            assert state.error and state.version == 0, state
            assert not task.done(), "the agent stopped"
            if session == 1:
                good = DesiredState(bus=BUS, version=3, assignment=Assignment(trip_id="T1"))
                watcher.publish(topics.desired(BUS), codec.encode(good), retain=True)
                await until(lambda: reported(watcher).version == 3, "the good document applied")
                assert reported(watcher).assignment == Assignment(trip_id="T1")
                assert reported(watcher).error is None
                assert agent.outcome.applied == good
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled(), "the agent ended by itself"
        watcher.reported = None


async def test_hostile_receipts_commands_and_oversized_messages_are_dropped_and_counted(
    mosquitto: Broker, watcher: Watcher, tmp_path: Path
) -> None:
    # MQTT 3.1.1: no Maximum Packet Size, so the broker delivers the oversized message too.
    agent = Agent(agent_config(mosquitto, tmp_path / "agent", protocol=4))
    task = asyncio.create_task(agent.run(), name="agent")
    try:
        await until(agent.link.connected.is_set, "the link")
        hostile = [
            (topics.stored(BUS), codec.encode(Stored(bus=BUS, ranges=[(1, 2**63)]))),
            (topics.stored(BUS), b'{"bus":"x","ranges":' + b"[" * 100_000 + b"}"),
            (topics.command(BUS), b'{"id":"c1","x":' + b"[" * 100_000 + b"}"),
            (topics.desired(BUS), b" " * (MAX_INBOUND + 1)),
        ]
        for topic, payload in hostile:
            watcher.publish(topic, payload)
        # The command is refused by the commands' own decoding, the rest by the link.
        await until(
            lambda: agent.link.rejected + agent.commands.rejected >= len(hostile),
            "every message counted",
        )
        counters = agent.counters()
        assert (counters["inbound_rejected"], counters["commands_rejected"]) == (3, 1)
        good = DesiredState(bus=BUS, version=1, assignment=Assignment(trip_id="T2"))
        watcher.publish(topics.desired(BUS), codec.encode(good))
        await until(
            lambda: watcher.reported is not None and reported(watcher).version == 1, "applied"
        )
        assert not task.done(), "the agent stopped"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled(), "the agent ended by itself"
