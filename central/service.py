"""`busfleet central serve`: ingest from the buses, keep fleet state, publish it to dashboards.

After storing a bus's records, central sends the bus a receipt (`stored`): only then does
the bus forget them. On every (re)connection central republishes the desired state of every
bus and the whole fleet view, so a broker that restarted without persistence loses nothing.
Several workers may share the ingest (`group`): MQTT 5 shared subscriptions spread the bus
messages over them, and (bus, seq) keys keep storage exactly-once whatever the order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aiomqtt

from central import mqtt
from central.config import CentralConfig
from central.ingest import Ingest
from central.store import CentralStore
from protocols import codec, topics
from protocols.schemas import CentralStats

log = logging.getLogger("busfleet.central.service")

# Desired states are published by the assign tools (retained); central follows them too, so
# that fleet state knows which buses are out of sync.
SUBSCRIPTIONS = (
    topics.Kind.PRESENCE,
    topics.Kind.TELEMETRY,
    topics.Kind.EVENTS,
    topics.Kind.COMMAND_ACK,
    topics.Kind.REPORTED,
    topics.Kind.DESIRED,
)
# Retained state every worker needs in full; the record streams can be shared.
SHAREABLE = (topics.Kind.TELEMETRY, topics.Kind.EVENTS, topics.Kind.COMMAND_ACK)


class CentralService:
    def __init__(self, config: CentralConfig, *, group: str | None = None) -> None:
        self.config = config
        self.group = group
        self.store = CentralStore(config.db)
        self.ingest = Ingest(self.store, config.offline_after_s)
        self.ready = asyncio.Event()  # subscribed and ingesting

    async def run(self) -> None:
        delay = 0.5
        try:
            while True:
                try:
                    await self._session()
                except aiomqtt.MqttError as exc:
                    if self.ready.is_set():
                        delay = 0.5
                    log.warning("broker connection lost: %s; reconnect in %.1f s", exc, delay)
                self.ready.clear()
                await asyncio.sleep(delay * random.uniform(0.7, 1.3))
                delay = min(delay * 2, 30.0)
        finally:
            self.store.close()

    def _filters(self) -> list[str]:
        out = []
        for kind in SUBSCRIPTIONS:
            flt = topics.all_buses(kind)
            out.append(topics.shared(self.group, flt) if self.group and kind in SHAREABLE else flt)
        return out

    async def _session(self) -> None:
        async with mqtt.client(self.config, max_queued_incoming_messages=0) as client:
            for flt in self._filters():
                await client.subscribe(flt, qos=1)
            for bus, payload in self.store.all_desired():
                await client.publish(topics.desired(bus), payload, qos=1, retain=True)
            self.ingest.dirty.update(self.ingest.buses)
            log.info("central subscribed on %s:%d", self.config.mqtt_host, self.config.mqtt_port)
            self.ready.set()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._receive(client), name="ingest")
                    tg.create_task(self._publish(client), name="publish")
            except* aiomqtt.MqttError as group:
                raise group.exceptions[0] from None

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes):
                payload = str(payload).encode()
            self.ingest.handle(message.topic.value, payload)

    async def _publish(self, client: aiomqtt.Client) -> None:
        """Receipts to buses, fleet entries to dashboards, stats; coalesced per interval."""
        last_stats = 0.0
        while True:
            await asyncio.sleep(self.config.fleet_publish_s)
            for receipt in self.ingest.take_receipts():
                await client.publish(topics.stored(receipt.bus), codec.encode(receipt), qos=1)
            now = time.time()
            self.ingest.tick(now)
            expired = self.store.expire_commands(now)
            if expired:
                log.info("%d commands expired without an answer", expired)
            for entry in self.ingest.take_dirty():
                await client.publish(
                    topics.fleet(entry.bus), codec.encode(entry), qos=0, retain=True
                )
            if now - last_stats >= 2.0:
                last_stats = now
                stats = CentralStats(t=now, counters=dict(self.ingest.counters))
                await client.publish(
                    topics.central_stats(), codec.encode(stats), qos=0, retain=True
                )
