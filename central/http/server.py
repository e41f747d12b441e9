"""Central's HTTP server (aiohttp): GTFS-Realtime feeds for passenger apps, and /healthz.

- `GET /gtfs-rt/vehicle-positions`, `GET /gtfs-rt/trip-updates`: protobuf FeedMessages
  (`application/x-protobuf`), as trip planners and the GTFS-RT validator fetch them;
  `?format=json` gives the same feed as JSON for people. TripUpdates mark the stops that
  diversions skip (SKIPPED); `GET /gtfs-rt/alerts` has a Service Alert per diversion.
- `GET /healthz`: `{"ok": true, "buses_online": N, "gtfs": {...} | null}`.

Fleet state comes from the store (`buses` table, written by the service as entries change)
unless a `fleet` source is given; journeys from `central.http.journeys`. A feed is built at most
once per `cache_s` whatever the number of clients. `create_app(routes=...)` takes further
routes (the media library, `central/http/media.py`), so that central runs one HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, MutableMapping
from typing import Any

from aiohttp import web

from central.config import CentralConfig
from central.diversions import current_diversions, route_label, skipped_stops, stop_label
from central.http import gtfs_rt
from central.http.alerts import service_alerts
from central.http.journeys import JourneyIndex
from central.http.media import media_routes
from central.http.releases import release_routes
from central.http.timetables import timetable_routes
from central.predictions.keeper import ModelKeeper
from central.predictions.live import TripPredictor
from central.store import gtfs as gtfs_db
from central.store.db import CentralStore
from central.timetables import timetable_root
from httpguard import ConnectionGuard, GuardedSite, ServerLimits
from protocols import codec
from protocols.errors import CodecError
from protocols.schemas import FleetEntry

__all__ = ["FleetSource", "Realtime", "create_app", "run_http", "serving", "store_fleet"]

FleetSource = Callable[[], Iterable[FleetEntry]]
PROTOBUF = "application/x-protobuf"

# More connections per address than on a bus: city-hall clients come through NAT and proxies.
CENTRAL_LIMITS = ServerLimits(per_address=64)


def store_fleet(store: CentralStore) -> FleetSource:
    """Fleet entries as the service last saved them."""

    def entries() -> list[FleetEntry]:
        out = []
        for row in store.buses():
            if row["body"]:
                try:
                    out.append(codec.decode(FleetEntry, row["body"].encode()))
                except CodecError:
                    continue
        return out

    return entries


class Realtime:
    """Builds the GTFS-RT feeds from the store, each at most once per `cache_s`."""

    def __init__(
        self,
        store: CentralStore,
        *,
        fleet: FleetSource | None = None,
        cache_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        counters: MutableMapping[str, int] | None = None,
        models: ModelKeeper | None = None,
    ) -> None:
        self.store = store
        # Entities left out of a feed (`gtfs_rt_skipped`); the service's counters in `serve`.
        self.counters: MutableMapping[str, int] = {} if counters is None else counters
        self.fleet = fleet or store_fleet(store)
        self.cache_s = cache_s
        self.clock = clock
        self.journeys = JourneyIndex(store)
        # Every stop ahead (issue 17), from the process's model (the service's: learned once).
        self.models = models or ModelKeeper(store, clock=clock)
        self.predictions = TripPredictor(store, self.models, clock=clock)
        self._cache: dict[str, tuple[float, Any]] = {}
        self._trips: dict[str, gtfs_rt.TripFacts | None] = {}
        self._feed_imported: float | None = None

    def trip_facts(self, trip_id: str) -> gtfs_rt.TripFacts | None:
        if trip_id not in self._trips:
            info = gtfs_db.trip(self.store, trip_id)
            self._trips[trip_id] = (
                None
                if info is None
                else gtfs_rt.TripFacts(info.route_id, info.direction_id, info.start_s)
            )
        return self._trips[trip_id]

    def feed(self, kind: str) -> Any:
        """The FeedMessage for 'vehicle-positions', 'trip-updates' or 'alerts' (KeyError
        otherwise)."""
        if kind not in ("vehicle-positions", "trip-updates", "alerts"):
            raise KeyError(kind)
        now = self.clock()
        cached = self._cache.get(kind)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        info = gtfs_db.feed_info(self.store)
        imported = info.imported if info else None
        if imported != self._feed_imported:  # a new timetable: forget what the old one said
            self._trips.clear()
            self._feed_imported = imported
        diversions = current_diversions(self.store, now)
        if kind == "alerts":
            feed = service_alerts(
                diversions,
                now,
                route_name=lambda r: route_label(self.store, r),
                stop_name=lambda s: stop_label(self.store, s),
                counters=self.counters,
            )
            self._cache[kind] = (now, feed)
            return feed
        entries = [e for e in self.fleet() if e.online]
        journeys = self.journeys.status((e.bus for e in entries), now)
        if kind == "trip-updates":  # with the stops diversions skip now
            feed = gtfs_rt.trip_updates(
                entries,
                journeys,
                now,
                trips=self.trip_facts,
                skipped=lambda t, r: skipped_stops(self.store, diversions, t, r, now),
                predictions=self.predictions,
                counters=self.counters,
            )
        else:
            feed = gtfs_rt.vehicle_positions(
                entries, journeys, now, trips=self.trip_facts, counters=self.counters
            )
        self._cache[kind] = (now, feed)
        return feed


def realtime_routes(realtime: Realtime) -> list[web.RouteDef]:
    async def feed(request: web.Request) -> web.Response:
        message = realtime.feed(request.match_info["kind"])
        if request.query.get("format") == "json":
            return web.json_response(gtfs_rt.feed_json(message), dumps=_dumps)
        return web.Response(body=message.SerializeToString(), content_type=PROTOBUF)

    async def healthz(_request: web.Request) -> web.Response:
        info = gtfs_db.feed_info(realtime.store)
        body = {
            "ok": True,
            "buses_online": sum(1 for e in realtime.fleet() if e.online),
            "gtfs": None
            if info is None
            else {"source": info.source, "imported": info.imported, **info.summary},
        }
        return web.json_response(body, dumps=_dumps)

    return [
        web.get("/gtfs-rt/{kind:vehicle-positions|trip-updates|alerts}", feed),
        web.get("/healthz", healthz),
    ]


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=1)


def create_app(
    store: CentralStore,
    *,
    fleet: FleetSource | None = None,
    routes: Iterable[web.RouteDef] = (),
    cache_s: float = 1.0,
    counters: MutableMapping[str, int] | None = None,
    models: ModelKeeper | None = None,
) -> web.Application:
    """The aiohttp application: GTFS-RT, /healthz, and any further `routes`; `models` is
    the process's prediction model (its own without), learned from the start, off the loop."""
    app = web.Application()
    realtime = Realtime(store, fleet=fleet, cache_s=cache_s, counters=counters, models=models)

    async def start_learning(_app: web.Application) -> None:
        realtime.models.poll()

    app.on_startup.append(start_learning)
    app.add_routes(realtime_routes(realtime))
    app.add_routes(list(routes))
    return app


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, host: str, port: int, guard: ConnectionGuard | None = None
) -> AsyncIterator[tuple[str, int]]:
    """Serve `app` on host:port (port 0: a free one) while inside; yields the bound address.

    Header, idle and body deadlines and a limit of connections per client address apply
    (httpguard; `guard` to choose them and read what it refused)."""
    guard = guard or ConnectionGuard(CENTRAL_LIMITS, "central http")
    app.middlewares.append(guard.read_body_within)
    runner = web.AppRunner(app, access_log=None, **guard.runner_options())
    await runner.setup()
    try:
        site = GuardedSite(runner, host, port, guard)
        await site.start()
        address = runner.addresses[0]
        yield str(address[0]), int(address[1])
    finally:
        await runner.cleanup()


async def run_http(
    config: CentralConfig,
    store: CentralStore,
    *,
    fleet: FleetSource | None = None,
    routes: Iterable[web.RouteDef] = (),
    counters: MutableMapping[str, int] | None = None,
    models: ModelKeeper | None = None,
) -> None:
    """Serve central's HTTP on `config.http_host:http_port` until cancelled, from the store
    the process opened (the service's: its handlers run on the same event loop); what it
    counts goes to `counters` (the service's, published in its stats); `models`: the service's
    prediction model keeper, so that GTFS-RT and the buses share one model learned once."""
    # The ad media library for the buses (Range requests: resumable downloads).
    # Timetable packages the same way (central/http/timetables.py).
    routes = [*media_routes(config.media_dir), *timetable_routes(timetable_root(config)), *routes]
    routes += release_routes(config.release_repo)  # the TUF repository, read-only (/releases/)
    app = create_app(store, fleet=fleet, routes=routes, counters=counters, models=models)
    async with serving(app, config.http_host, config.http_port):
        await asyncio.Event().wait()
