"""`busfleet central serve`: the central service with its companions, as one process.

Beside the service (ingest, fleet state: central/service.py) run, as named tasks of one
TaskGroup: the passenger-message expiry (its own MQTT connection, reconnecting with backoff),
the diversion sync (likewise: central/diversions.py) and, when `http_port` is set, the HTTP
server (GTFS-Realtime, media, /healthz). If one of them fails, the process ends and systemd
restarts it whole.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from typing import Any

import aiomqtt

from central import mqtt
from central.config import CentralConfig
from central.diversions import diversion_sync
from central.http.server import run_http
from central.messages import run_message_expiry
from central.store.db import CentralStore

log = logging.getLogger("busfleet.central.serve")


async def message_expiry(config: CentralConfig) -> None:
    """Expire passenger messages forever, over a connection of its own."""
    store = CentralStore(config.db)
    delay = 0.5
    try:
        while True:
            try:
                async with mqtt.client(config, identifier=f"{config.client_id}-expiry") as client:
                    delay = 0.5
                    await run_message_expiry(store, client)
            except aiomqtt.MqttError as exc:
                log.warning("message expiry: broker connection lost: %s", exc)
            await asyncio.sleep(delay * random.uniform(0.7, 1.3))
            delay = min(delay * 2, 30.0)
    finally:
        store.close()


async def serve(config: CentralConfig, service: Coroutine[Any, Any, None]) -> None:
    """Run `service` (CentralService(...).run()) with message expiry and the HTTP server."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(service, name="central")
        tg.create_task(message_expiry(config), name="message-expiry")
        tg.create_task(diversion_sync(config), name="diversion-sync")
        if config.http_port:
            log.info("HTTP on %s:%d", config.http_host, config.http_port)
            tg.create_task(run_http(config), name="http")
