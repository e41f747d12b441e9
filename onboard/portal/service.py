"""The portal as one long-running task of the agent: HTTP server, firewall sync, statistics.

`PortalService.run()` is what the agent puts in its TaskGroup. It never ends by itself and
never takes the agent down: a firewall or port that fails is logged and retried with a capped
backoff, while GPS, CAN and telemetry carry on. On the way out it stops the HTTP server but
leaves the firewall as it is, so the passengers stay online across an agent restart and the
next start picks its sessions up again (core.Portal.start).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web

from httpguard import ConnectionGuard, GuardedSite, ServerLimits
from onboard.backoff import Backoff
from onboard.errors import ConfigError
from onboard.portal.content import ContentProvider, no_content
from onboard.portal.core import MacLookup, Neighbours, Portal, Settings, no_macs
from onboard.portal.feedback import FeedbackSink
from onboard.portal.firewall import Firewall, FirewallError
from onboard.portal.firewalls import open_firewall
from onboard.portal.server import make_app
from onboard.portal.sessions import Limits
from onboard.portal.settings import PortalSection
from onboard.portal.stats import StatsSink
from onboard.portal.store import SessionStore
from onboard.store import AgentStore

log = logging.getLogger("busfleet.onboard.portal")

BACKOFF_MAX_S = 60.0


class PortalService:
    def __init__(
        self,
        settings: Settings,
        firewall: Firewall,
        store: AgentStore | str | Path,
        *,
        listen_host: str = "0.0.0.0",
        listen_port: int = 8080,
        tls: ssl.SSLContext | None = None,
        tls_port: int = 8443,
        content: ContentProvider = no_content,
        on_feedback: FeedbackSink | None = None,
        on_stats: StatsSink | None = None,
        neighbours: MacLookup = no_macs,
        sync_every_s: float = 5.0,
        stats_every_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        limits: ServerLimits | None = None,
    ) -> None:
        self.settings = settings
        # Deadlines and connections per phone (httpguard), over both listeners.
        self.guard = ConnectionGuard(limits or ServerLimits(), "portal")
        self.firewall = firewall
        self.store = store  # agent.sqlite: the agent's open store, or its path
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.tls = tls
        self.tls_port = tls_port
        self.content = content
        self.on_feedback = on_feedback
        self.on_stats = on_stats
        self.neighbours = neighbours
        self.sync_every_s = sync_every_s
        self.stats_every_s = stats_every_s
        self.clock = clock
        self.portal: Portal | None = None
        self.ready = asyncio.Event()
        self.addresses: list[tuple[str, int]] = []  # where it listens, once ready

    async def run(self) -> None:
        """Serve until cancelled; failures are retried with a capped backoff."""
        retries = Backoff(BACKOFF_MAX_S)
        async for _attempt in retries:
            started = time.monotonic()
            try:
                await self._serve()
            except (FirewallError, OSError) as exc:
                log.error("portal stopped: %s; again within %.0f s", exc, retries.bound())
            except Exception:  # a bug here must not take GPS, CAN and telemetry down with it
                log.exception("portal failed; again within %.0f s", retries.bound())
            self.ready.clear()
            if time.monotonic() - started > BACKOFF_MAX_S:
                retries.reset()  # it ran a good while: this failure is a new one

    async def _serve(self) -> None:
        store = SessionStore(self.store)
        try:
            portal = Portal(
                self.settings,
                self.firewall,
                store,
                content=self.content,
                on_feedback=self.on_feedback,
                neighbours=self.neighbours,
                clock=self.clock,
            )
            await portal.start()
            self.portal = portal
            app = make_app(portal)
            app.middlewares.append(self.guard.read_body_within)
            runner = web.AppRunner(app, access_log=None, **self.guard.runner_options())
            await runner.setup()
            try:
                guard, host = self.guard, self.listen_host
                await GuardedSite(runner, host, self.listen_port, guard).start()
                if self.tls is not None:
                    site = GuardedSite(runner, host, self.tls_port, guard, ssl_context=self.tls)
                    await site.start()
                self.addresses = [a for a in runner.addresses if isinstance(a, tuple)]
                log.info(
                    "portal listening on %s (%s firewall)", self.addresses, portal.firewall.name
                )
                self.ready.set()
                await self._loop(portal)
            finally:
                await runner.cleanup()
        finally:
            self.portal = None
            store.close()

    async def _loop(self, portal: Portal) -> None:
        next_stats = time.monotonic() + self.stats_every_s
        while True:
            await asyncio.sleep(self.sync_every_s)
            try:
                await portal.sync()
            except FirewallError as exc:
                log.warning("portal sync failed: %s", exc)
            if time.monotonic() >= next_stats:
                next_stats += self.stats_every_s
                snapshot = portal.stats.snapshot()
                if self.on_stats is not None:
                    try:
                        self.on_stats(snapshot)
                    except Exception:  # statistics must never stop the portal
                        log.exception("portal statistics sink failed")


def portal_limits(section: PortalSection) -> Limits:
    """The session limits of the [portal] section (also applied live: onboard/remote_config.py)."""
    return Limits(
        prelogin_idle_s=section.prelogin_idle_s,
        idle_s=section.idle_s,
        session_s=section.session_s,
        volume_bytes=int(section.volume_mb * 1_000_000),
        max_clients=section.max_clients,
        max_pending=max(4 * section.max_clients, 16),
    )


def build_portal(
    section: PortalSection,
    *,
    data_dir: str | Path,
    store: AgentStore | None = None,
    content: ContentProvider = no_content,
    on_feedback: FeedbackSink | None = None,
    on_stats: StatsSink | None = None,
    extra_blocked: Sequence[str] = (),
) -> PortalService:
    """The portal as agent.toml's [portal] section describes it.

    `extra_blocked` are more addresses passengers must never reach (the agent passes its MQTT
    broker's host; a name is skipped here because onboard/config.py refuses a portal with a
    named broker unless portal.blocked lists addresses).
    Sessions are kept in `store` (the agent's), else in `data_dir`/agent.sqlite.
    """
    try:
        firewall = open_firewall(section, extra_blocked=_literal_ipv4s(extra_blocked))
    except FirewallError as exc:
        raise ConfigError(f"[portal]: {exc}", key="portal") from exc
    host = section.hostname or section.address
    settings = Settings(
        public_url=f"http://{host}/",
        limits=portal_limits(section),
        feedback_per_hour=section.feedback_per_hour,
        operator=section.operator,
        require_mac=section.firewall == "nftables",
        extra_hosts=(section.address,),
    )
    tls = None
    if section.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(section.tls_cert, section.tls_key or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"portal.tls_cert: {exc}", key="portal.tls_cert") from exc
    nft = section.firewall == "nftables"
    return PortalService(
        settings,
        firewall,
        Path(data_dir) / "agent.sqlite" if store is None else store,
        listen_host=section.listen_host,
        listen_port=section.listen_port,
        tls=tls,
        tls_port=section.tls_port,
        content=content,
        on_feedback=on_feedback,
        on_stats=on_stats,
        neighbours=Neighbours(section.passenger_if if nft else "").mac,
        sync_every_s=section.sync_every_s,
        stats_every_s=section.stats_every_s,
    )


def _literal_ipv4s(hosts: Sequence[str]) -> list[str]:
    found = []
    for host in hosts:
        with contextlib.suppress(ValueError):
            ip = ipaddress.IPv4Address(host)
            if not ip.is_loopback:
                found.append(f"{ip}/32")
    return found
