"""Firewall backends: nftables (the real one) and null (development: nothing is enforced).

The portal decides; the firewall enforces. Both backends have the same small surface:
`load` the ruleset with the clients that are still authorised, `allow` and `revoke` one
client, and `listed` — what the firewall allows now, with each client's byte counters.
The nftables backend drives the `nft` CLI (`nft -f -` with a script on stdin, `nft -j` for
listings): a subprocess per change is cheap at the rate passengers accept terms, and the
CLI's scripts are atomic transactions, which the restart path relies on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from onboard.errors import DeviceError

if TYPE_CHECKING:
    from onboard.portal.settings import PortalSection

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nftables" / "portal.nft"

_IFNAME = re.compile(r"[A-Za-z0-9_.@-]{1,15}")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_BLOCK = re.compile(r"^[ \t]*# BEGIN (.+?)\n.*?^[ \t]*# END \1\n", re.M | re.S)


class FirewallError(DeviceError):
    """The firewall refused a change or could not be read; `detail` holds nft's message."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(f"{message}: {detail.strip()}" if detail else message)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Client:
    ip: str
    mac: str


@dataclass(frozen=True, slots=True)
class Allowed:
    """A client the firewall lets through, with its running counters since it was added."""

    client: Client
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(frozen=True, slots=True)
class Ruleset:
    """What the template needs; every value is checked, since it ends up in an nft script."""

    passenger_if: str
    address: str  # the bus on the passenger network
    port: int  # the portal's HTTP port (passengers' TCP 80 is redirected to it)
    tls_port: int = 8443
    uplink_if: str = ""  # masquerade out of this interface; "" leaves NAT to someone else
    garden: tuple[str, ...] = ()  # IPv4 addresses or networks open before acceptance
    blocked: tuple[str, ...] = ()  # never reachable from the passenger network
    rate_kbytes: int = 0  # per client and direction; 0: no limit
    table: str = "busfleet_portal"

    def __post_init__(self) -> None:
        for name in ("passenger_if", "uplink_if"):
            value = getattr(self, name)
            if (value or name == "passenger_if") and not _IFNAME.fullmatch(value):
                raise FirewallError(f"{name} {value!r} is not an interface name")
        if not _TABLE.fullmatch(self.table):
            raise FirewallError(f"nft table name {self.table!r} is not allowed")
        check_ipv4(self.address)
        for net in (*self.garden, *self.blocked):
            check_network(net)
        if not (0 < self.port < 65536 and 0 < self.tls_port < 65536 and self.rate_kbytes >= 0):
            raise FirewallError("ports must be 1..65535 and the rate limit >= 0")


def check_ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError as exc:
        raise FirewallError(f"{text!r} is not an IPv4 address") from exc


def check_network(text: str) -> str:
    try:
        return str(ipaddress.IPv4Network(text, strict=False))
    except ValueError as exc:
        raise FirewallError(f"{text!r} is not an IPv4 address or network") from exc


def parse_networks(text: str) -> tuple[str, ...]:
    """A config value "10.0.0.1, 192.0.2.0/24" as checked networks."""
    return tuple(check_network(part.strip()) for part in text.split(",") if part.strip())


def check_client(client: Client) -> Client:
    check_ipv4(client.ip)
    if not _MAC.fullmatch(client.mac):
        raise FirewallError(f"{client.mac!r} is not a MAC address (lower case, colons)")
    return client


def _timeout(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


def _elements(items: Sequence[str]) -> str:
    return f"elements = {{ {', '.join(items)} }}" if items else ""


def render_ruleset(
    rules: Ruleset, clients: Sequence[tuple[Client, float]] = (), template: str | None = None
) -> str:
    """The template with its placeholders filled; `clients` are (client, seconds left)."""
    text = DEFAULT_TEMPLATE.read_text() if template is None else template
    off = {"rate limit": not rules.rate_kbytes, "masquerade": not rules.uplink_if}
    text = _BLOCK.sub(lambda m: "" if off.get(m.group(1), False) else m.group(0), text)
    checked = [(check_client(c), t) for c, t in clients]
    values = {
        "table": rules.table,
        "passenger_if": rules.passenger_if,
        "uplink_if": rules.uplink_if,
        "address": rules.address,
        "port": str(rules.port),
        "tls_port": str(rules.tls_port),
        "rate": str(rules.rate_kbytes),
        "garden": _elements(rules.garden),
        "blocked": _elements(rules.blocked),
        "clients": _elements([f"{c.ip} . {c.mac} timeout {_timeout(t)}" for c, t in checked]),
        "clients_down": _elements([f"{c.ip} timeout {_timeout(t)}" for c, t in checked]),
    }

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise FirewallError(f"the nft template has an unknown placeholder {match.group(0)}")
        return values[match.group(1)]

    lines = [
        line if line.lstrip().startswith("#") else _PLACEHOLDER.sub(fill, line).rstrip()
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


class Firewall(Protocol):
    name: str

    async def load(self, clients: Sequence[tuple[Client, float]]) -> None:
        """Install the ruleset, with these clients allowed for these many seconds."""

    async def listed(self) -> list[Allowed]:
        """The clients allowed now (before `load`: those left from the last run)."""

    async def allow(self, client: Client, timeout_s: float) -> None: ...

    async def revoke(self, client: Client) -> None: ...


class NullFirewall:
    """Development: remembers what it was told and enforces nothing."""

    name = "null"

    def __init__(self) -> None:
        self.allowed: dict[Client, float] = {}
        self.loaded = False

    @classmethod
    def from_config(cls, section: PortalSection, blocked: Sequence[str] = ()) -> Self:
        """Nothing to set up: the section is ignored."""
        return cls()

    async def load(self, clients: Sequence[tuple[Client, float]]) -> None:
        self.allowed = dict(clients)
        self.loaded = True

    async def listed(self) -> list[Allowed]:
        return [Allowed(c) for c in self.allowed]

    async def allow(self, client: Client, timeout_s: float) -> None:
        self.allowed[client] = timeout_s

    async def revoke(self, client: Client) -> None:
        self.allowed.pop(client, None)


class NftablesFirewall:
    """The ruleset of deploy/nftables/portal.nft, driven through the `nft` CLI."""

    name = "nftables"

    def __init__(
        self, rules: Ruleset, *, template: Path | None = None, nft: Sequence[str] = ("nft",)
    ) -> None:
        self.rules = rules
        self.template = template or DEFAULT_TEMPLATE
        self.nft = tuple(nft)  # the command; tests prefix it with `ip netns exec NAME`

    @classmethod
    def from_config(cls, section: PortalSection, blocked: Sequence[str] = ()) -> Self:
        """The ruleset of the [portal] section; `blocked` adds networks passengers never reach.

        Raises FirewallError for a value that must not reach an nft script.
        """
        rules = Ruleset(
            passenger_if=section.passenger_if,
            address=section.address,
            port=section.listen_port,
            tls_port=section.tls_port,
            uplink_if=section.uplink_if,
            garden=parse_networks(section.walled_garden),
            blocked=parse_networks(section.blocked) + tuple(blocked),
            rate_kbytes=section.rate_kbytes,
            table=section.nft_table,
        )
        template = Path(section.nft_template) if section.nft_template else None
        return cls(rules, template=template)

    async def _run(self, *args: str, script: str | None = None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.nft,
                *args,
                stdin=asyncio.subprocess.PIPE if script is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise FirewallError(f"cannot run {self.nft[0]}", str(exc)) from exc
        out, err = await proc.communicate(script.encode() if script is not None else None)
        if proc.returncode != 0:
            raise FirewallError(f"nft {' '.join(args)} failed", err.decode(errors="replace"))
        return out.decode()

    async def load(self, clients: Sequence[tuple[Client, float]]) -> None:
        try:
            template = self.template.read_text()
        except OSError as exc:
            raise FirewallError(f"cannot read the nft template {self.template}") from exc
        await self._run("-f", "-", script=render_ruleset(self.rules, clients, template))

    async def listed(self) -> list[Allowed]:
        try:
            out = await self._run("-j", "list", "table", "inet", self.rules.table)
        except FirewallError as exc:
            if "No such file or directory" in exc.detail:
                return []  # no table yet: nothing was allowed
            raise
        return parse_listing(out)

    async def allow(self, client: Client, timeout_s: float) -> None:
        # `add` is a no-op for an element that exists, so add-delete-add (one transaction)
        # replaces an existing element with a fresh timeout and never fails on a missing one.
        c, t, table = check_client(client), _timeout(timeout_s), self.rules.table
        up = f"inet {table} clients {{ {c.ip} . {c.mac}"
        down = f"inet {table} clients_down {{ {c.ip}"
        script = (
            f"add element {up} timeout {t} }}\ndelete element {up} }}\n"
            f"add element {up} timeout {t} }}\n"
            f"add element {down} timeout {t} }}\ndelete element {down} }}\n"
            f"add element {down} timeout {t} }}\n"
        )
        await self._run("-f", "-", script=script)

    async def revoke(self, client: Client) -> None:
        c, table = check_client(client), self.rules.table
        up = f"inet {table} clients {{ {c.ip} . {c.mac}"
        down = f"inet {table} clients_down {{ {c.ip}"
        script = (
            f"add element {up} timeout 1s }}\ndelete element {up} }}\n"
            f"add element {down} timeout 1s }}\ndelete element {down} }}\n"
        )
        await self._run("-f", "-", script=script)


def parse_listing(text: str) -> list[Allowed]:
    """`nft -j list table` output -> the allowed clients with their counters."""
    try:
        items = json.loads(text)["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FirewallError("nft printed JSON we cannot read", text[:200]) from exc
    sets: dict[str, list[Any]] = {}
    for item in items:
        if isinstance(item, dict) and "set" in item:
            sets[item["set"].get("name", "")] = item["set"].get("elem", [])
    down: dict[str, int] = {}
    for raw in sets.get("clients_down", []):
        value, counted = _element(raw)
        if isinstance(value, str):
            down[value] = counted
    allowed = []
    for raw in sets.get("clients", []):
        value, counted = _element(raw)
        if isinstance(value, dict) and len(value.get("concat", [])) == 2:
            ip, mac = (str(v) for v in value["concat"])
            allowed.append(Allowed(Client(ip, mac.lower()), counted, down.get(ip, 0)))
    return allowed


def _element(raw: Any) -> tuple[Any, int]:
    """An element's value and byte counter (a bare value when it has neither)."""
    if isinstance(raw, dict) and "elem" in raw:
        elem = raw["elem"]
        counter = elem.get("counter") or {}
        return elem.get("val"), int(counter.get("bytes", 0))
    return raw, 0
