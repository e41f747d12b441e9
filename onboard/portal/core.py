"""The portal's core: the session table joined to the firewall, the store and the counters.

The HTTP handlers (server.py) and the periodic sync (service.py) call this; it turns the
table's `Change`s into firewall changes, store writes and statistics, in that order, so
that a client is let through only once its session is on disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from onboard.portal.content import ContentProvider, PortalContent, no_content
from onboard.portal.feedback import FeedbackDesk, FeedbackSink
from onboard.portal.firewall import Client, Firewall, FirewallError
from onboard.portal.pages import SessionInfo
from onboard.portal.sessions import Change, Event, Limits, Session, SessionTable, State, stored
from onboard.portal.stats import PortalStats
from onboard.portal.store import SessionStore

log = logging.getLogger("busfleet.onboard.portal")


class MacLookup(Protocol):
    def __call__(self, ip: str, *, fresh: bool = False) -> str | None: ...


def no_macs(ip: str, *, fresh: bool = False) -> str | None:
    """Development without a passenger network: clients are told apart by IP alone."""
    return None


ARP = Path("/proc/net/arp")


@dataclass(frozen=True, slots=True)
class Settings:
    public_url: str = "http://10.42.0.1/"  # where probes are sent; its host is the portal's
    limits: Limits = field(default_factory=Limits)
    feedback_per_hour: int = 5
    operator: str = ""  # named on the terms page
    require_mac: bool = False  # the nftables backend keys clients on MAC + IP
    extra_hosts: tuple[str, ...] = ()  # more Host values that mean "the portal itself"


class Neighbours:
    """MAC addresses of clients by IP, from the kernel's ARP table (re-read every 2 s)."""

    def __init__(self, interface: str = "", path: Path = ARP, max_age_s: float = 2.0) -> None:
        self.interface = interface
        self.path = path
        self.max_age_s = max_age_s
        self._macs: dict[str, str] = {}
        self._read_at = float("-inf")

    def _read(self, now: float) -> None:
        self._read_at = now
        macs = {}
        try:
            lines = self.path.read_text().splitlines()[1:]
        except OSError:
            lines = []
        for line in lines:
            parts = line.split()
            # IP, HW type, flags, MAC, mask, device; flags 0x0 is an incomplete entry.
            ok = len(parts) >= 6 and parts[2] != "0x0"
            if ok and (not self.interface or parts[5] == self.interface):
                macs[parts[0]] = parts[3].lower()
        self._macs = macs

    def mac(self, ip: str, *, fresh: bool = False) -> str | None:
        """The MAC of `ip`; `fresh` rereads the table (acceptance must not use a stale one)."""
        now = time.monotonic()
        stale = ip not in self._macs or now - self._read_at > self.max_age_s
        if fresh or (stale and now - self._read_at > 0.05):  # misses reread 20x/s at most
            self._read(now)
        return self._macs.get(ip)


class Portal:
    def __init__(
        self,
        settings: Settings,
        firewall: Firewall,
        store: SessionStore,
        *,
        content: ContentProvider = no_content,
        on_feedback: FeedbackSink | None = None,
        neighbours: MacLookup = no_macs,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.firewall = firewall
        self.store = store
        self.content_provider = content
        self.clock = clock
        self.neighbours = neighbours
        self.table = SessionTable(settings.limits, store.salt)
        self.stats = PortalStats()
        self.feedback = FeedbackDesk(self._feedback_sink(on_feedback), settings.feedback_per_hour)

    def _feedback_sink(self, sink: FeedbackSink | None) -> FeedbackSink:
        def counted(category: str, text: str) -> None:
            if sink is not None:
                sink(category, text)
            self.stats.count("feedback")

        return counted

    def content(self) -> PortalContent:
        try:
            return self.content_provider()
        except Exception:  # the bus's data is optional on a page: show the page without it
            log.exception("portal content provider failed")
            return PortalContent()

    # -- clients ----------------------------------------------------------------------------
    def identify(self, ip: str, *, fresh: bool = False) -> tuple[str | None, str]:
        return self.neighbours(ip, fresh=fresh), ip

    def client_key(self, ip: str) -> str:
        mac, ip = self.identify(ip)
        return self.table.key_for(mac, ip)

    async def seen(self, ip: str) -> Session:
        mac, ip = self.identify(ip)
        session, changes = self.table.seen(mac, ip, self.clock())
        await self.apply(changes)
        return session

    async def accept(self, ip: str) -> str:
        """ "accepted", "already", "full", "unknown" (no MAC) or "error" (firewall)."""
        mac, ip = self.identify(ip, fresh=True)
        if mac is None and self.settings.require_mac:
            log.warning("a client accepted but is not in the ARP table: cannot let it through")
            return "unknown"
        outcome, changes = self.table.accept(mac, ip, self.clock())
        if outcome == "full":
            self.stats.count("refused_full")
        try:
            await self.apply(changes)
        except FirewallError:
            log.exception("could not let a client through")
            await self.apply(self.table.logout(self.table.key_for(mac, ip)))
            return "error"
        return outcome

    async def logout(self, ip: str) -> None:
        await self.apply(self.table.logout(self.client_key(ip)))

    def info(self, session: Session | None) -> SessionInfo:
        if session is None or session.state is not State.AUTHORISED:
            return SessionInfo(False)
        return SessionInfo(
            True,
            self.table.seconds_remaining(session, self.clock()),
            self.table.bytes_remaining(session),
        )

    # -- applying changes -------------------------------------------------------------------
    async def apply(self, changes: Iterable[Change]) -> None:
        """Firewall and store follow the table; a failed revoke is retried by the next sync."""
        changes = list(changes)
        if not changes:
            return  # most requests: nothing changed
        save, delete = [], []
        for change in changes:
            s = change.session
            grant = (change.before is State.PENDING and s.state is State.AUTHORISED) or (
                change.event is Event.REATTACH
            )
            if grant:
                self.store.save([stored(s)])  # on disk before the client gets through
                if s.mac is not None and s.ip is not None:
                    timeout = self.table.seconds_remaining(s, self.clock())
                    await self.firewall.allow(Client(s.ip, s.mac), timeout)
            elif change.before is State.AUTHORISED and s.state is State.ENDED:
                delete.append(s.key)
                if s.mac is not None and s.ip is not None:
                    try:
                        await self.firewall.revoke(Client(s.ip, s.mac))
                    except FirewallError:
                        log.exception("could not revoke a client; the next sync retries")
            elif change.event is Event.ACTIVITY and s.state is State.AUTHORISED:
                save.append(stored(s))
        self.store.save(save)
        self.store.delete(delete)
        self.stats.observe(changes)
        self.stats.clients(self.table.count(State.AUTHORISED))

    async def start(self) -> None:
        """After a (re)start: restore sessions, recognise the clients the kernel still allows,
        and load the ruleset with exactly those (one atomic replacement)."""
        now = self.clock()
        self.table.restore(self.store.load(), now)
        keep: list[tuple[Client, float]] = []
        for allowed in await self.firewall.listed():
            c = allowed.client
            session = self.table.attach(c.mac, c.ip, allowed.bytes_up, allowed.bytes_down)
            if session is not None:
                keep.append((c, self.table.seconds_remaining(session, now)))
        await self.firewall.load(keep)
        await self.sync()  # sessions that ran out while the agent was down end now
        log.info(
            "portal started: %d sessions restored, %d still in the firewall",
            self.table.count(State.AUTHORISED),
            len(keep),
        )

    async def sync(self) -> None:
        """Timeouts, then the firewall's counters (activity, volume), then repair drift."""
        now = self.clock()
        await self.apply(self.table.tick(now))
        listed = await self.firewall.listed()
        changes: list[Change] = []
        present = set()
        for allowed in listed:
            c = allowed.client
            key = self.table.key_for(c.mac, c.ip)
            present.add(key)
            if self.table.is_authorised(key):
                changes += self.table.counters(key, allowed.bytes_up, allowed.bytes_down, now)
            else:  # a leftover: ended here but still in the kernel (a failed revoke)
                await self.firewall.revoke(c)
        await self.apply(changes)
        for s in self.table.sessions():
            if s.state is State.AUTHORISED and s.key not in present and s.mac and s.ip:
                log.warning("a client was missing from the firewall: allowing it again")
                await self.firewall.allow(Client(s.ip, s.mac), self.table.seconds_remaining(s, now))
