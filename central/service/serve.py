"""`busfleet central serve`: the central service with its HTTP server, as one process.

The service (central/service/service.py: ingest, fleet state, dispatchers' requests and the
periodic sync of desired documents, all on its one MQTT client) and, when `http_port` is set,
the HTTP server (GTFS-Realtime, media, /healthz) run as named tasks of one TaskGroup. If one
of them fails, the process ends and systemd restarts it whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from central.config import CentralConfig
from central.http.server import run_http

log = logging.getLogger("busfleet.central.serve")


async def serve(config: CentralConfig, service: Coroutine[Any, Any, None]) -> None:
    """Run `service` (CentralService(...).run()) with the HTTP server."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(service, name="central")
        if config.http_port:
            log.info("HTTP on %s:%d", config.http_host, config.http_port)
            tg.create_task(run_http(config), name="http")
