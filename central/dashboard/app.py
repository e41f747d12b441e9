"""The dispatcher dashboard (Textual). MQTT runs in a worker that only posts messages."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import ClassVar

import aiomqtt
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message

from central import mqtt
from central.config import CentralConfig
from central.dashboard.screens.fleet import FleetScreen
from central.dashboard.state import apply
from protocols import codec, topics
from protocols.errors import ProtocolError
from protocols.schemas import CentralStats, FleetEntry

log = logging.getLogger("busfleet.central.dashboard")

COALESCE_S = 0.25  # fleet updates reach the screen at most four times a second


class FleetUpdated(Message):
    def __init__(self, entries: list[FleetEntry], stats: CentralStats | None) -> None:
        super().__init__()
        self.entries = entries
        self.stats = stats


class LinkStatus(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class DashboardApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "busfleet — dispatch"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False),
    ]

    def __init__(self, config: CentralConfig) -> None:
        super().__init__()
        self.config = config
        self.fleet: dict[str, FleetEntry] = {}
        self.stats: CentralStats | None = None
        self.updates = 0  # fleet updates applied (tests watch it)

    def on_mount(self) -> None:
        self.push_screen(FleetScreen())
        self.run_worker(self._follow_fleet(), name="mqtt", exclusive=True)

    def on_fleet_updated(self, message: FleetUpdated) -> None:
        self.fleet = apply(self.fleet, message.entries)
        if message.stats is not None:
            self.stats = message.stats
        self.updates += 1
        screen = self.screen
        if isinstance(screen, FleetScreen):
            screen.refresh_fleet(self.fleet, self.stats)

    def on_link_status(self, message: LinkStatus) -> None:
        self.sub_title = message.text

    async def _follow_fleet(self) -> None:
        while True:
            try:
                identifier = f"dash-{uuid.uuid4().hex[:12]}"  # several dashboards at once
                async with mqtt.client(self.config, identifier=identifier) as client:
                    await client.subscribe(topics.all_buses(topics.Kind.FLEET))
                    await client.subscribe(topics.central_stats())
                    self.post_message(
                        LinkStatus(f"{self.config.mqtt_host}:{self.config.mqtt_port}")
                    )
                    await self._pump(client)
            except aiomqtt.MqttError as exc:
                self.post_message(LinkStatus(f"broker unreachable: {exc}"))
                await asyncio.sleep(1.0)

    async def _pump(self, client: aiomqtt.Client) -> None:
        pending: dict[str, FleetEntry] = {}
        stats: CentralStats | None = None
        loop = asyncio.get_running_loop()
        flush_at = loop.time() + COALESCE_S
        messages = aiter(client.messages)
        while True:
            try:
                async with asyncio.timeout(max(0.0, flush_at - loop.time())):
                    message = await anext(messages)
                payload = message.payload if isinstance(message.payload, bytes) else b""
                try:
                    if message.topic.value == topics.central_stats():
                        stats = codec.decode(CentralStats, payload)
                    else:
                        entry = codec.decode(FleetEntry, payload)
                        pending[entry.bus] = entry
                except ProtocolError as exc:
                    log.warning("ignored a bad fleet message: %s", exc)
            except TimeoutError:
                pass
            if loop.time() >= flush_at:
                if pending or stats is not None:
                    self.post_message(FleetUpdated(list(pending.values()), stats))
                    pending, stats = {}, None
                flush_at = loop.time() + COALESCE_S


def create_app(config: CentralConfig) -> DashboardApp:
    """App factory: the dashboard for the broker and identity in `config`."""
    return DashboardApp(config)
