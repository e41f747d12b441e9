"""The dashboard's MQTT link: follows central's retained state, sends dispatchers' requests.

Requests and their replies go through central/client.py (`Requests`), the same code the CLI
tools use; reconnecting follows central's one backoff policy (central/mqtt.py).

Runs as a Textual worker and only posts messages (central/dashboard/messages.py). Fleet
entries (1,000 buses at 1 Hz), stats and alarms are coalesced: the newest of each goes to the
app at most every COALESCE_S, so the screen redraws a few times a second whatever the rate.
Replies to this dashboard's requests go at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

import aiomqtt
from textual.message import Message

from central import mqtt
from central.client import Requests
from central.config import CentralConfig
from central.dashboard.messages import FleetUpdated, LinkStatus, ReplyReceived
from protocols import codec, topics
from protocols.errors import ProtocolError
from protocols.requests import DispatchRequest
from protocols.schemas import Alarm, CentralStats, FleetEntry

log = logging.getLogger("busfleet.central.dashboard")

COALESCE_S = 0.5  # fleet updates reach the screen at most twice a second: live enough at 1 Hz


class NotConnected(Exception):
    """A request while the broker is unreachable."""


class Link:
    def __init__(self, config: CentralConfig, user: str, post: Callable[[Message], bool]) -> None:
        self.config = config
        self.user = topics.check_user(user)
        self.post = post
        self.requests: Requests | None = None  # requests to central, while connected
        self.connected = asyncio.Event()  # requests made before wait for it
        # What arrived since the last flush: the newest of each.
        self._fleet: dict[str, FleetEntry] = {}
        self._alarms: dict[str, Alarm | None] = {}
        self._stats: CentralStats | None = None

    async def run(self) -> None:
        """Forever: connect, subscribe, pump; reconnect with backoff when the link drops."""
        retry = mqtt.backoff()
        async for _attempt in retry:
            try:
                identifier = f"dash-{self.user[:20]}-{uuid.uuid4().hex[:8]}"  # several at once
                async with mqtt.client(self.config, identifier=identifier) as client:
                    requests = Requests(client, self.user)
                    for flt in (
                        topics.all_buses(topics.Kind.FLEET),
                        topics.central_stats(),
                        topics.all_alarms(),
                    ):
                        await client.subscribe(flt, qos=1)
                    await requests.subscribe()
                    self.requests = requests
                    self.connected.set()
                    retry.reset()
                    where = f"{self.config.mqtt_host}:{self.config.mqtt_port}"
                    self.post(LinkStatus(f"{self.user}@{where}", connected=True))
                    await self._pump(client)
            except aiomqtt.MqttError as exc:
                self.requests = None
                self.connected.clear()
                self.post(LinkStatus(f"broker unreachable: {exc}"))

    async def request(self, request: DispatchRequest, wait_s: float = 10.0) -> None:
        """Publish a request; made before the link is up, it waits up to `wait_s` for it."""
        if self.requests is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self.connected.wait()
        requests = self.requests
        if requests is None:
            raise NotConnected("not connected to the broker")
        await requests.send(request)

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Read every message; a second task flushes what piled up every COALESCE_S.

        Reading is never interrupted by a timeout: cancelling a read at the wrong moment
        loses the message it had just taken (aiomqtt's iterator), a reply among them.
        """
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._flush_every(), name="dashboard-flush")
                tg.create_task(self._read(client), name="dashboard-read")
        except* aiomqtt.MqttError as group:
            raise group.exceptions[0] from None

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            topic = message.topic.value
            try:
                if topic.startswith(topics.ROOT + "/fleet/"):
                    entry = codec.decode(FleetEntry, payload)
                    self._fleet[entry.bus] = entry
                elif topic.startswith(topics.ROOT + "/alarms/"):
                    alarm_id = topics.alarm_id(topic)
                    self._alarms[alarm_id] = codec.decode(Alarm, payload) if payload else None
                elif topic == topics.central_stats():
                    self._stats = codec.decode(CentralStats, payload)
                elif self.requests is not None:
                    reply = self.requests.feed(topic, payload)  # a reply, or central's presence
                    if reply is not None:
                        self.post(ReplyReceived(reply))
            except ProtocolError as exc:
                log.warning("ignored a bad message on %s: %s", topic, exc)
        raise aiomqtt.MqttError("the message stream ended")

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(COALESCE_S)
            if self._fleet or self._alarms or self._stats is not None:
                self.post(FleetUpdated(list(self._fleet.values()), self._stats, self._alarms))
                self._fleet, self._alarms, self._stats = {}, {}, None
