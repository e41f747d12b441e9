"""The fleet link: one MQTT connection to city hall, re-entered in a loop after every outage.

On each connection the bus announces itself (retained birth with a fresh session number,
last will saying offline), subscribes to its desired state, republishes its reported state
and drains the outbox in order, oldest first. Records leave the outbox only after PUBACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import msgspec

from onboard.config import AgentConfig
from onboard.outbox import Outbox, Pending
from protocols import codec, topics
from protocols.schemas import Presence, TelemetryBatch, TelemetryRecord

log = logging.getLogger("busfleet.onboard.link")

AGENT_VERSION = "0.1.0"


def client_kwargs(config: AgentConfig) -> dict[str, object]:
    """Connection settings shared by the agent's client and its tools."""
    m = config.mqtt
    kwargs: dict[str, object] = {
        "hostname": m.host,
        "port": m.port,
        "identifier": config.bus.id,
        "username": config.mqtt_username,
        "keepalive": m.keepalive_s,
        "protocol": aiomqtt.ProtocolVersion.V5 if m.protocol == 5 else aiomqtt.ProtocolVersion.V311,
        "max_inflight_messages": 20,
        "timeout": 10,
    }
    if m.password_file:
        kwargs["password"] = Path(m.password_file).read_text().strip()
    if m.ca_file:
        kwargs["tls_context"] = ssl.create_default_context(cafile=m.ca_file)
    return kwargs


class Link:
    """Owns the MQTT connection of one bus."""

    def __init__(
        self,
        config: AgentConfig,
        outbox: Outbox,
        on_desired: Callable[[bytes], None],
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.on_desired = on_desired
        self.bus_id = config.bus.id
        self.wake = asyncio.Event()  # set when the outbox has something new
        self.connected = asyncio.Event()
        self.reported: bytes | None = None
        self._reported_changed = asyncio.Event()
        self.session = 0
        self.sent_records = 0
        self.connects = 0

    def set_reported(self, payload: bytes) -> None:
        self.reported = payload
        self._reported_changed.set()

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._connected_session()
            except (aiomqtt.MqttError, OSError) as exc:
                if self.connected.is_set():
                    delay = 0.5  # it was up: start the backoff again
                log.warning("link down: %s; reconnect in %.1f s", exc, delay)
            self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.7, 1.3))
            delay = min(delay * 2, self.config.mqtt.backoff_max_s)

    def _presence(self, online: bool) -> bytes:
        return codec.encode(
            Presence(
                bus=self.bus_id,
                online=online,
                session=self.session,
                t=time.time(),
                agent=AGENT_VERSION,
            )
        )

    async def _connected_session(self) -> None:
        self.session = self.outbox.next_counter("session")
        will = aiomqtt.Will(topics.presence(self.bus_id), self._presence(False), qos=1, retain=True)
        async with aiomqtt.Client(will=will, **client_kwargs(self.config)) as client:  # type: ignore[arg-type]
            self.connects += 1
            log.info("link up (session %d)", self.session)
            await client.publish(
                topics.presence(self.bus_id), self._presence(True), qos=1, retain=True
            )
            await client.subscribe(topics.desired(self.bus_id), qos=1)
            self.connected.set()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._receive(client), name="link-receive")
                    tg.create_task(self._send_outbox(client), name="link-outbox")
                    tg.create_task(self._send_reported(client), name="link-reported")
            except* aiomqtt.MqttError as group:
                raise group.exceptions[0] from None
            finally:
                # A clean stop says goodbye itself; the will covers crashes and lost links.
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(2):
                        await client.publish(
                            topics.presence(self.bus_id), self._presence(False), qos=1, retain=True
                        )

    async def _receive(self, client: aiomqtt.Client) -> None:
        desired = topics.desired(self.bus_id)
        async for message in client.messages:
            if message.topic.value == desired and isinstance(message.payload, bytes):
                self.on_desired(message.payload)

    async def _send_reported(self, client: aiomqtt.Client) -> None:
        while True:
            self._reported_changed.clear()
            if self.reported is not None:
                await client.publish(
                    topics.reported(self.bus_id), self.reported, qos=1, retain=True
                )
            await self._reported_changed.wait()

    async def _send_outbox(self, client: aiomqtt.Client) -> None:
        limit = self.config.telemetry.batch_max
        while True:
            self.wake.clear()
            rows = self.outbox.pending(limit, kind="telemetry")
            if not rows:
                await self.wake.wait()
                continue
            payload = self._batch(rows)
            await client.publish(topics.telemetry(self.bus_id), payload, qos=1)
            self.outbox.remove([r.seq for r in rows])
            self.sent_records += len(rows)

    def _batch(self, rows: list[Pending]) -> bytes:
        oldest = min(r.created for r in rows)
        backfill = time.time() - oldest > self.config.telemetry.backfill_after_s
        records = [
            msgspec.structs.replace(codec.decode(TelemetryRecord, r.body), seq=r.seq) for r in rows
        ]
        return codec.encode(TelemetryBatch(bus=self.bus_id, records=records, backfill=backfill))
