"""Bad input on every side: the agent and central keep running and count what they rejected."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path

import can
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker
from central.config import CentralConfig
from central.service.service import CentralService
from hw_sim.pty import open_pty
from onboard.agent import Agent
from onboard.config import AgentConfig, BusSection, CanSection, GpsSection, MqttSection
from protocols import codec, topics
from protocols.nmea.encode import encode_epoch
from protocols.schemas import Position, TelemetryBatch, TelemetryRecord

GARBAGE = [
    b"\x00\xff\xfe binary junk at start-up \x81\x82\r\n",
    b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*00\r\n",  # checksum
    b"$GPGGA,123519,4807.0\r\n",  # truncated
    b"$PUBX,00,proprietary*33\r\n",
    b"$GPRMC" + b"A" * 300 + b"\r\n",  # overlong
    b"not nmea at all\r\n",
]


async def until(check: object, what: str, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.1)):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_an_agent_fed_garbage_on_its_serial_port_and_can_keeps_running_and_counts_it(
    mosquitto: Broker, tmp_path: Path
) -> None:
    master, slave = open_pty()
    channel = f"bad-input-{os.getpid()}"
    config = AgentConfig(
        bus=BusSection(id="bus-bad", data_dir=str(tmp_path / "agent")),
        mqtt=MqttSection(port=mosquitto.port, insecure_dev_broker=True),
        gps=GpsSection(source="serial", device=slave),
        can=CanSection(interface="virtual", channel=channel),
    )
    config = dataclasses.replace(
        config,
        telemetry=dataclasses.replace(config.telemetry, send_every_s=0.5),
        display=dataclasses.replace(config.display, enabled=False),
    )
    agent = Agent(config)
    task = asyncio.create_task(agent.run(), name="agent")
    sender = can.Bus(interface="virtual", channel=channel)
    try:
        await until(lambda: agent.link.connected.is_set(), "the link")
        for i in range(12):
            t = time.time()
            lines = encode_epoch(t, -16.92, 145.77 + i * 1e-4, 8.0, 90.0, 10.0, 9, 0.9)
            for chunk in [GARBAGE[i % len(GARBAGE)], *lines]:
                os.write(master, chunk)
            # CAN: a short frame and an all-0xFF (not available) speed frame among good ones.
            sender.send(
                can.Message(arbitration_id=0x18FEF100, data=b"\x01\x02", is_extended_id=True)
            )
            sender.send(
                can.Message(arbitration_id=0x18FEF100, data=b"\xff" * 8, is_extended_id=True)
            )
            await asyncio.sleep(0.25)
        await until(lambda: agent.records >= 2, "telemetry records despite the garbage")
        counters = agent.counters()
        assert counters["nmea_rejected"] >= 5
        assert counters["can_rejected"] >= 1
        assert not task.done(), "the agent stopped"
        # The all-0xFF speed is "not available": never a number such as 255.996 km/h.
        assert agent.can is not None and agent.can.state.speed_kmh is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sender.shutdown()
        os.close(master)


async def test_central_fed_garbage_keeps_ingesting_and_counts_what_it_rejected(
    mosquitto: Broker, tmp_path: Path
) -> None:
    config = dataclasses.replace(
        CentralConfig(), db=str(tmp_path / "central.sqlite"), mqtt_port=mosquitto.port
    )
    service = CentralService(config)
    task = asyncio.create_task(service.run(), name="central")
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        await until(lambda: service.ready.is_set(), "central to subscribe")
        bad = [
            b"",
            b"\x00\x01",
            b"{",
            b'{"v":1,"bus":"b1","records":"x"}',
            b"x" * 300_000,
            b'{"v":9,"bus":"b1","records":[]}',
            b"\x02\xff\xff\xff",
        ]
        for payload in bad:
            client.publish(topics.telemetry("b1"), payload, qos=1).wait_for_publish(5)
        client.publish(topics.presence("b1"), b"[1,2]", qos=1).wait_for_publish(5)
        good = TelemetryBatch(
            bus="b1", records=[TelemetryRecord(seq=1, t=time.time(), pos=Position(lat=1, lon=2))]
        )
        client.publish(topics.telemetry("b1"), codec.encode(good), qos=1).wait_for_publish(5)
        await until(lambda: service.ingest.counters["records"] == 1, "the good record")
        await until(lambda: service.ingest.counters["rejected"] >= len(bad), "rejections")
        assert not task.done(), "central stopped"
    finally:
        client.loop_stop()
        client.disconnect()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
