"""The dashboard's MQTT link: follows central's retained state, sends dispatchers' requests.

Runs as a Textual worker and only posts messages (central/dashboard/messages.py). Fleet
entries (1,000 buses at 1 Hz), stats and alarms are coalesced: the newest of each goes to the
app at most every COALESCE_S, so the screen redraws a few times a second whatever the rate.
Replies to this dashboard's requests go at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import aiomqtt
from textual.message import Message

from central import mqtt
from central.config import CentralConfig
from central.dashboard.messages import FleetUpdated, LinkStatus, ReplyReceived
from protocols import codec, topics
from protocols.errors import ProtocolError
from protocols.schemas import Alarm, CentralStats, DispatchReply, DispatchRequest, FleetEntry

log = logging.getLogger("busfleet.central.dashboard")

COALESCE_S = 0.25  # fleet updates reach the screen at most four times a second


class NotConnected(Exception):
    """A request while the broker is unreachable."""


class Link:
    def __init__(self, config: CentralConfig, user: str, post: Callable[[Message], bool]) -> None:
        self.config = config
        self.user = topics.check_user(user)
        self.post = post
        self.client: aiomqtt.Client | None = None

    async def run(self) -> None:
        """Forever: connect, subscribe, pump; reconnect after a second when the link drops."""
        while True:
            try:
                identifier = f"dash-{self.user[:20]}-{uuid.uuid4().hex[:8]}"  # several at once
                async with mqtt.client(self.config, identifier=identifier) as client:
                    for flt in (
                        topics.all_buses(topics.Kind.FLEET),
                        topics.central_stats(),
                        topics.all_alarms(),
                        topics.dispatch_reply(self.user),
                    ):
                        await client.subscribe(flt, qos=1)
                    self.client = client
                    where = f"{self.config.mqtt_host}:{self.config.mqtt_port}"
                    self.post(LinkStatus(f"{self.user}@{where}", connected=True))
                    await self._pump(client)
            except aiomqtt.MqttError as exc:
                self.client = None
                self.post(LinkStatus(f"broker unreachable: {exc}"))
                await asyncio.sleep(1.0)

    async def request(self, request: DispatchRequest) -> None:
        client = self.client
        if client is None:
            raise NotConnected("not connected to the broker")
        await client.publish(topics.dispatch_request(self.user), codec.encode(request), qos=1)

    async def _pump(self, client: aiomqtt.Client) -> None:
        fleet: dict[str, FleetEntry] = {}
        alarms: dict[str, Alarm | None] = {}
        stats: CentralStats | None = None
        loop = asyncio.get_running_loop()
        flush_at = loop.time() + COALESCE_S
        reply_topic = topics.dispatch_reply(self.user)
        messages = aiter(client.messages)
        while True:
            try:
                async with asyncio.timeout(max(0.0, flush_at - loop.time())):
                    message = await anext(messages)
                payload = message.payload if isinstance(message.payload, bytes) else b""
                topic = message.topic.value
                try:
                    if topic.startswith(topics.ROOT + "/fleet/"):
                        entry = codec.decode(FleetEntry, payload)
                        fleet[entry.bus] = entry
                    elif topic.startswith(topics.ROOT + "/alarms/"):
                        alarm_id = topics.alarm_id(topic)
                        alarms[alarm_id] = codec.decode(Alarm, payload) if payload else None
                    elif topic == reply_topic:
                        self.post(ReplyReceived(codec.decode(DispatchReply, payload)))
                    elif topic == topics.central_stats():
                        stats = codec.decode(CentralStats, payload)
                except ProtocolError as exc:
                    log.warning("ignored a bad message on %s: %s", topic, exc)
            except TimeoutError:
                pass
            if loop.time() >= flush_at:
                if fleet or alarms or stats is not None:
                    self.post(FleetUpdated(list(fleet.values()), stats, alarms))
                    fleet, alarms, stats = {}, {}, None
                flush_at = loop.time() + COALESCE_S
