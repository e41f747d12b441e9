"""`busfleet central serve`: the central service with its HTTP server, as one process.

The service (central/service/service.py: ingest, fleet state, dispatchers' requests and the
periodic sync of desired documents, all on its one MQTT client) and, when `http_port` is set,
the HTTP server (GTFS-Realtime, media, /healthz) run as named tasks of one TaskGroup. If one
of them fails, the process ends and systemd restarts it whole. With `release_repo` set, a third
task re-signs the release repository's timestamp (central/service/release_timestamp.py).

The service opened the database; the HTTP server reads it through the same store, on the same
event loop (one owner, one connection; the dispatch's slow work takes `store.for_thread()`).
"""

from __future__ import annotations

import asyncio
import logging

from central.config import CentralConfig
from central.http.server import run_http
from central.service.release_timestamp import TimestampTask
from central.service.service import CentralService

log = logging.getLogger("busfleet.central.serve")


async def serve(config: CentralConfig, service: CentralService) -> None:
    """Run the service with the HTTP server, which reads the service's store; the store is
    closed once both have ended, not while the HTTP server may still read it."""
    service.closes_store = False
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(service.run(), name="central")
            if config.http_port:
                log.info("HTTP on %s:%d", config.http_host, config.http_port)
                counters, models = service.ingest.counters, service.sync.keeper  # one model
                http = run_http(config, service.store, counters=counters, models=models)
                tg.create_task(http, name="http")
            if config.release_repo:  # re-sign its timestamp: in a group, the leader only

                def live() -> bool:
                    return service.leader is None or service.leader.holds()

                tg.create_task(TimestampTask(config.release_repo, live).run(), name="releases")
    finally:
        service.store.close()
