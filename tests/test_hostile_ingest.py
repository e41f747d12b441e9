"""An authenticated bus is hostile: central, fed from outside through a real mosquitto, stays
up, keeps answering and counts what it refused (issue 13).

Each test publishes the hostile payload as a bus would (a raw paho client), then shows central
alive: the next good message is ingested, a dispatcher's request is answered, the counters in
its published stats say what was refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker
from central import client
from central.config import CentralConfig
from central.service.ingest import RECEIPT_RANGES
from central.service.service import CentralService
from protocols import codec, compact, topics
from protocols.codec import MAX_PAYLOAD
from protocols.errors import CodecError
from protocols.ranges import expand
from protocols.requests import AckAlarm
from protocols.schemas import (
    Alarm,
    CentralStats,
    Event,
    EventBatch,
    Position,
    Stored,
    TelemetryBatch,
    TelemetryRecord,
)

HUGE = 2**63


async def until(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    for _ in range(int(seconds / 0.05)):
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Bus:
    """A raw MQTT client on the broker, publishing what a (hostile) bus would; it also keeps
    what central sends back to it and the stats central publishes."""

    def __init__(self, broker: Broker, bus: str = "b1") -> None:
        self.bus = bus
        self.received: list[tuple[str, bytes]] = []
        self.stats: dict[str, int] = {}
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=bus, protocol=paho.MQTTv5)
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.subscribe([(topics.stored(bus), 1), (topics.central_stats(), 0)])
        self.c.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == topics.central_stats():
            self.stats = codec.decode(CentralStats, msg.payload).counters
        else:
            self.received.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@contextlib.asynccontextmanager
async def central(config: CentralConfig) -> AsyncIterator[CentralService]:
    service = CentralService(config)
    task = asyncio.create_task(service.run(), name="central")
    try:
        await until(lambda: service.ready.is_set() or task.done(), "central to subscribe")
        yield service
        assert not task.done(), f"central stopped: {task.exception() if task.done() else ''}"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def config_for(broker: Broker, tmp_path: Path, **changes: Any) -> CentralConfig:
    return dataclasses.replace(
        CentralConfig(),
        db=str(tmp_path / "central.sqlite"),
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        fleet_publish_s=0.1,
        **changes,
    )


def good_batch(bus: str, seq: int) -> bytes:
    rec = TelemetryRecord(seq=seq, t=time.time(), pos=Position(lat=-16.9, lon=145.7))
    return codec.encode(TelemetryBatch(bus=bus, records=[rec]))


def raw(doc: dict[str, Any]) -> bytes:
    """A payload as a hostile bus writes it: JSON that no schema object would let us build."""
    return msgspec.json.encode(doc)


# Each would have been stored or applied before the bounds (and most then stopped central).
HOSTILE = [
    (topics.telemetry, {"v": 1, "bus": "b1", "records": [{"seq": HUGE, "t": 1.0}]}),
    (topics.telemetry, {"v": 1, "bus": "b1", "records": [{"seq": -5, "t": 1.0}]}),
    (topics.events, {"v": 1, "bus": "b1", "events": [{"seq": HUGE, "t": 1.0, "kind": "x"}]}),
    (
        topics.events,
        {"v": 1, "bus": "b1", "events": [{"seq": 9, "t": 1.0, "kind": "x", "severity": HUGE}]},
    ),
    (topics.presence, {"v": 1, "bus": "b1", "online": True, "session": HUGE, "t": 1.0}),
    (
        topics.presence,
        {"v": 1, "bus": "b1", "online": True, "session": 1, "t": 1.0, "offline_after_s": 1e300},
    ),
    (topics.reported, {"v": 1, "bus": "b1", "version": HUGE, "t": 1.0}),
]


async def test_numbers_beyond_their_bounds_are_refused_and_central_survives_its_restart(
    mosquitto: Broker, tmp_path: Path
) -> None:
    config = config_for(mosquitto, tmp_path)
    bus = Bus(mosquitto)
    try:
        async with central(config) as service:
            for topic_of, doc in HOSTILE:
                # Retained where the topic is (presence, reported): again at every restart.
                bus.publish(topic_of("b1"), raw(doc), retain=topic_of is not topics.telemetry)
            bus.publish(topics.telemetry("b1"), good_batch("b1", 1))
            await until(lambda: service.ingest.counters["records"] == 1, "the good record")
            await until(
                lambda: bus.stats.get("rejected_CodecError", 0) == len(HOSTILE),
                "the refusals in central's published stats",
            )
            assert service.ingest.store.seqs("b1") == [1]  # not the negative one either
            assert service.ingest.counters["errors"] == 0
            # Central answers a dispatcher (an unknown alarm: a refusal, but an answer).
            reply = await client.ask(config, AckAlarm(alarm="nope"), user="eve")
            assert not reply.ok and "no alarm" in reply.error
        # The retained ones come again to a restarted central, which stays up all the same.
        async with central(config) as again:
            bus.publish(topics.telemetry("b1"), good_batch("b1", 2))
            await until(lambda: again.ingest.counters["records"] == 1, "a record after restart")
            # The broker keeps the last retained message of each topic: events, presence,
            # reported.
            retained = {topic_of("b1") for topic_of, _ in HOSTILE} - {topics.telemetry("b1")}
            await until(
                lambda: again.ingest.counters["rejected_CodecError"] == len(retained),
                "the retained ones refused again",
            )
            assert again.ingest.counters["errors"] == 0
    finally:
        bus.close()


async def test_a_gapped_backlog_gets_receipts_small_enough_for_the_broker_and_the_bus(
    mosquitto: Broker, tmp_path: Path
) -> None:
    # 60,000 records with every other sequence number: 60,000 ranges, once over 1 MB in one
    # receipt (the production broker's max_packet_size, and 4x the bus's MAX_PAYLOAD).
    seqs = list(range(2, 120_001, 2))
    bus = Bus(mosquitto)
    try:
        async with central(config_for(mosquitto, tmp_path)) as service:
            t0 = time.time() - len(seqs)
            for i in range(0, len(seqs), compact.MAX_RECORDS):
                records = [
                    TelemetryRecord(seq=s, t=t0 + s / 2) for s in seqs[i : i + compact.MAX_RECORDS]
                ]
                payload = compact.encode_batch(TelemetryBatch(bus="b1", records=records))
                bus.publish(topics.telemetry("b1"), payload)

            def confirmed() -> set[int]:
                return {s for _t, p in list(bus.received) for s in expand(_receipt(p).ranges)}

            await until(lambda: confirmed() == set(seqs), "receipts for every record", 120)
            assert service.ingest.counters["records"] == len(seqs)
        receipts = [p for _t, p in bus.received]
        assert len(receipts) >= len(seqs) // RECEIPT_RANGES
        for payload in receipts:
            assert len(_receipt(payload).ranges) <= RECEIPT_RANGES
            assert len(payload) <= MAX_PAYLOAD  # the bus decodes it (onboard/link/mqtt.py)
    finally:
        bus.close()


def _receipt(payload: bytes) -> Stored:
    return codec.decode(Stored, payload)


class AlarmWatcher:
    """A dashboard's view of the retained alarms: what does not decode, it cannot show."""

    def __init__(self, broker: Broker) -> None:
        self.alarms: dict[str, Alarm] = {}
        self.unreadable = 0
        self.c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(topics.all_alarms(), qos=1)
        self.c.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if not msg.payload:
            return
        try:
            alarm = codec.decode(Alarm, msg.payload)
        except CodecError:  # counted: the dashboard would have hidden it
            self.unreadable += 1
            return
        self.alarms[alarm.id] = alarm

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def emergency(seq: int, t: float, **data: Any) -> bytes:
    event = Event(seq=seq, t=t, kind="emergency", severity=4, data=data)
    return codec.encode(EventBatch(bus="b1", events=[event]))


async def test_an_emergency_with_latitude_999_is_shown_without_position_and_the_next_one_too(
    mosquitto: Broker, tmp_path: Path
) -> None:
    config = config_for(mosquitto, tmp_path)
    bus = Bus(mosquitto)
    dashboard = AlarmWatcher(mosquitto)
    try:
        async with central(config) as service:
            now = time.time()
            bus.publish(topics.events("b1"), emergency(1, now, lat=999.0, lon=145.7))
            [alarm] = await until(lambda: list(dashboard.alarms.values()), "the alarm shown")
            assert alarm.kind == "emergency" and alarm.lat is None and alarm.lon is None
            # The bus's next, genuine emergency: the same latched alarm, and central lives.
            bus.publish(topics.events("b1"), emergency(2, now + 5, lat=-16.9, lon=145.7))
            bus.publish(topics.telemetry("b1"), good_batch("b1", 3))
            await until(lambda: service.ingest.counters["records"] == 1, "the next record")
            assert service.ingest.counters["errors"] == 0
            reply = await client.ask(config, AckAlarm(alarm=alarm.id), user="eve")
            assert reply.ok, reply.error
            await until(
                lambda: dashboard.alarms[alarm.id].state == "closed", "the acknowledgement shown"
            )
            assert dashboard.unreadable == 0
    finally:
        dashboard.close()
        bus.close()


async def test_central_never_takes_a_message_over_its_packet_cap(
    mosquitto: Broker, tmp_path: Path
) -> None:
    # mosquitto's development config has no size limit: the cap is central's own.
    big = b'{"v":1,"bus":"b1","records":[' + b" " * (3 * 1024 * 1024) + b"]}"
    bus = Bus(mosquitto)
    try:
        # MQTT 5: central announces its Maximum Packet Size, so the broker never sends it.
        async with central(config_for(mosquitto, tmp_path)) as service:
            bus.publish(topics.telemetry("b1"), big)
            bus.publish(topics.telemetry("b1"), good_batch("b1", 1))
            await until(lambda: service.ingest.counters["records"] == 1, "the good record")
            assert service.ingest.counters["messages"] == 1, "the big one reached central"
        # MQTT 3.1.1 has no such property: central drops it unread, and counts it.
        v4 = config_for(mosquitto, tmp_path / "v4", mqtt_protocol=4)
        async with central(v4) as service:
            bus.publish(topics.telemetry("b1"), big)
            bus.publish(topics.telemetry("b1"), good_batch("b1", 2))
            await until(lambda: service.ingest.counters["records"] == 1, "the good record")
            assert service.ingest.counters["rejected_TooLarge"] == 1
            assert service.ingest.counters["messages"] == 1  # the big one never got that far
    finally:
        bus.close()
