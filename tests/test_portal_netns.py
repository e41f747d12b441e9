"""The real thing: the nftables ruleset in network namespaces, with phones, a bus and an internet.

    phone-N (10.77.0.N) --veth-- br0 [bus 10.77.0.1 | up0 192.0.2.1] --veth-- internet
                                                                     192.0.2.10 web + probes
                                                                     192.0.2.20 walled garden
                                                                     192.0.2.30 "MQTT broker"

The portal runs as its own process in the bus namespace (`python -m onboard.portal`, the
agent's code with the nftables backend and deploy/nftables/portal.nft), so that it can be
killed and restarted like the agent. The phones and servers live in threads of this test
that entered their namespace (setns): every socket they open belongs to it. Nothing here
touches the machine's own network: namespaces, veths and the bridge are made per run under
unique names and deleted in `finally`. Needs root, `ip` and `nft` (CI runs as root).
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest

from onboard.portal.firewall import Client, NftablesFirewall, Ruleset
from tests.fleet_helpers import wait_for

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` on PATH"
    probe = f"bfp-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        nft = subprocess.run(
            ["ip", "netns", "exec", probe, "nft", "list", "ruleset"], capture_output=True, text=True
        )
        if nft.returncode != 0:
            return f"nftables unusable in a namespace: {nft.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


REASON = _why_not()


# Not a skip: CI runs as root with nftables installed, so this is a failure that says why.
@pytest.fixture(autouse=True)
def _namespaces_and_nftables_work() -> None:
    assert REASON is None, REASON


# -- namespaces -----------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _enter(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
    finally:
        os.close(fd)


class Netns:
    """A network namespace and a thread inside it: `run(fn)` opens fn's sockets in there."""

    def __init__(self, name: str) -> None:
        self.name = name
        sh("ip", "netns", "add", name)
        self.sh("ip", "link", "set", "lo", "up")
        self._thread = ThreadPoolExecutor(1, initializer=_enter, initargs=(name,))

    def sh(self, *argv: str) -> str:
        return sh("ip", "netns", "exec", self.name, *argv)

    def run(self, fn: Callable[[], T]) -> T:
        return self._thread.submit(fn).result()

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr}"
    return proc.stdout


# -- servers --------------------------------------------------------------------------------
ONLINE = {  # what the real probe servers answer (REFERENCE.md section 4)
    "/hotspot-detect.html": (200, "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY>"),
    "/generate_204": (204, ""),
    "/connecttest.txt": (200, "Microsoft Connect Test"),
    "/success.txt": (200, "success\n"),
}
PROBE_HOSTS = {
    "/hotspot-detect.html": "captive.apple.com",
    "/generate_204": "connectivitycheck.gstatic.com",
    "/connecttest.txt": "www.msftconnecttest.com",
    "/success.txt": "detectportal.firefox.com",
}


class Internet(BaseHTTPRequestHandler):
    hits: list[str]  # "ip path" of every request served, set on the class per run

    def do_GET(self) -> None:
        local = self.connection.getsockname()[0]
        self.hits.append(f"{local} {self.path}")
        status, body = ONLINE.get(self.path, (200, f"internet {local}"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class Banner(socketserver.BaseRequestHandler):
    """A TCP service that greets with its name: "reached" means the banner arrived."""

    def handle(self) -> None:
        self.request.sendall(self.server.banner)  # type: ignore[attr-defined]


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data, self.client_address)


def serve(ns: Netns, make: Callable[[], socketserver.BaseServer]) -> socketserver.BaseServer:
    server = ns.run(make)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def banner_server(port: int, name: str) -> socketserver.BaseServer:
    server = socketserver.ThreadingTCPServer(("0.0.0.0", port), Banner)
    server.banner = name.encode()  # type: ignore[attr-defined]
    return server


# -- phone actions --------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: str
    location: str | None


def http_request(
    ip: str, path: str, host: str | None = None, form: dict[str, str] | None = None
) -> Reply:
    conn = http.client.HTTPConnection(ip, 80, timeout=5)
    try:
        headers = {"Host": host or ip, "Connection": "close"}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request("POST" if form is not None else "GET", path, body=body, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, resp.read().decode(errors="replace"), resp.getheader("Location"))
    finally:
        conn.close()


def tcp_banner(ip: str, port: int) -> str | None:
    """The service's greeting, or None when the connection is refused, reset or times out."""
    try:
        with socket.create_connection((ip, port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(100).decode() or None
    except OSError:
        return None


def udp_echo(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(b"dns?", (ip, port))
        try:
            return sock.recv(100) == b"dns?"
        except OSError:
            return False


# -- the world ------------------------------------------------------------------------------
BUS_IP, WEB, GARDEN, BROKER = "10.77.0.1", "192.0.2.10", "192.0.2.20", "192.0.2.30"
IDLE_S = 4.0


@dataclass
class Phone:
    ns: Netns
    ip: str
    mac: str

    def get(self, ip: str, path: str = "/", host: str | None = None) -> Reply:
        return self.ns.run(lambda: http_request(ip, path, host))

    def post(self, ip: str, path: str, form: dict[str, str]) -> Reply:
        """A form POST as the browser sends it: with the token of the page the form is on."""
        page = self.get(ip, "/status" if path == "/logout" else "/")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.body)
        form = {**form, "csrf": token.group(1)} if token else form
        return self.ns.run(lambda: http_request(ip, path, form=form))

    def probes(self) -> dict[str, Reply]:
        """Every OS probe, sent where the phone believes the probe server is."""
        return {path: self.get(WEB, path, host) for path, host in PROBE_HOSTS.items()}

    def tcp(self, ip: str, port: int) -> str | None:
        return self.ns.run(lambda: tcp_banner(ip, port))


def online(replies: dict[str, Reply]) -> bool:
    return all((r.status, r.body) == ONLINE[path] for path, r in replies.items())


def captive(replies: dict[str, Reply]) -> bool:
    return all(r.status == 302 and r.location == f"http://{BUS_IP}/" for r in replies.values())


@dataclass
class World:
    tag: str
    workdir: Path
    bus: Netns
    internet: Netns
    hits: list[str]
    spaces: list[Netns] = field(default_factory=list)
    servers: list[socketserver.BaseServer] = field(default_factory=list)
    agent: subprocess.Popen[bytes] | None = None
    phones: int = 0

    def add_phone(self) -> Phone:
        self.phones += 1
        n = self.phones + 1
        ns = Netns(f"bfp-{self.tag}-ph{n}")
        self.spaces.append(ns)
        mac = f"02:00:00:77:00:{n:02x}"
        sh("ip", "link", "add", "eth0", "netns", ns.name, "address", mac, "type", "veth",
           "peer", "name", f"ph{n}", "netns", self.bus.name)  # fmt: skip
        self.bus.sh("ip", "link", "set", f"ph{n}", "master", "br0", "up")
        ns.sh("ip", "addr", "add", f"10.77.0.{n}/24", "dev", "eth0")
        ns.sh("ip", "link", "set", "eth0", "up")
        ns.sh("ip", "route", "add", "default", "via", BUS_IP)
        return Phone(ns, f"10.77.0.{n}", mac)

    def start_agent(self) -> None:
        log = (self.workdir / "portal.log").open("ab")
        self.agent = subprocess.Popen(
            ["ip", "netns", "exec", self.bus.name, sys.executable, "-m", "onboard.portal",
             "--config", str(self.workdir / "agent.toml")],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    def kill_agent(self) -> None:
        if self.agent is not None:
            self.agent.kill()  # like kill -9 or a power-less crash of the agent
            self.agent.wait(10)
            self.agent = None

    def log(self) -> str:
        path = self.workdir / "portal.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def wait_ready(self, phone: Phone) -> None:
        def answers() -> bool:
            assert self.agent is not None and self.agent.poll() is None, self.log()
            try:
                return phone.get(BUS_IP, "/api/captive").status == 200
            except OSError:
                return False

        wait_for(answers, 30, f"the portal to answer\n{self.log()}", every=0.2)

    def allowed_ips(self) -> set[str]:
        out = self.bus.sh("nft", "-j", "list", "set", "inet", "busfleet_portal", "clients")
        ips = set()
        for item in json.loads(out)["nftables"]:
            for elem in item.get("set", {}).get("elem", []):
                value = elem["elem"]["val"] if isinstance(elem, dict) and "elem" in elem else elem
                ips.add(value["concat"][0])
        return ips


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tag = secrets.token_hex(3)
    workdir = tmp_path_factory.mktemp("portal-netns")
    made: list[Netns] = []
    w: World | None = None
    try:
        bus = Netns(f"bfp-{tag}-bus")
        made.append(bus)
        internet = Netns(f"bfp-{tag}-inet")
        made.append(internet)
        w = World(tag, workdir, bus, internet, [], spaces=made)
        bus.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")  # inside the bus namespace only
        # A fixed MAC: a bridge otherwise takes its lowest port's, and each change of it
        # flushes the bus's ARP table (the portal's source of client MACs).
        bus.sh("ip", "link", "add", "br0", "address", "02:00:00:00:01:01", "type", "bridge")
        bus.sh("ip", "addr", "add", f"{BUS_IP}/24", "dev", "br0")
        bus.sh("ip", "link", "set", "br0", "up")
        sh("ip", "link", "add", "up0", "netns", bus.name, "type", "veth",
           "peer", "name", "eth0", "netns", internet.name)  # fmt: skip
        bus.sh("ip", "addr", "add", "192.0.2.1/24", "dev", "up0")
        bus.sh("ip", "link", "set", "up0", "up")
        for ip in (WEB, GARDEN, BROKER):
            internet.sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        internet.sh("ip", "link", "set", "eth0", "up")
        # No route back to the phones: the bus masquerades them, like a bus behind cellular.

        Internet.hits = w.hits
        w.servers += [
            serve(internet, lambda: ThreadingHTTPServer(("0.0.0.0", 80), Internet)),
            serve(internet, lambda: banner_server(443, "https")),
            serve(internet, lambda: banner_server(1883, "central broker")),
            serve(bus, lambda: banner_server(9100, "agent management")),
            serve(bus, lambda: banner_server(1883, "bus broker")),
            serve(bus, lambda: banner_server(53, "dns over tcp")),
            serve(bus, lambda: socketserver.ThreadingUDPServer(("0.0.0.0", 53), Echo)),
        ]
        (workdir / "agent.toml").write_text(
            f'[bus]\ndata_dir = "{workdir / "data"}"\n'
            '[portal]\nenabled = true\nfirewall = "nftables"\n'
            f'address = "{BUS_IP}"\npassenger_if = "br0"\nuplink_if = "up0"\n'
            f'walled_garden = "{GARDEN}"\nblocked = "{BROKER}"\n'
            f"idle_s = {IDLE_S}\nsession_s = 3600.0\nsync_every_s = 0.3\n"
            "[mqtt]\ninsecure_dev_broker = true\n"
        )
        w.start_agent()
        yield w
    finally:
        if w is not None:
            w.kill_agent()
            for server in w.servers:
                server.shutdown()
                server.server_close()
        for ns in reversed(made):
            ns.close()


# -- the tests ------------------------------------------------------------------------------
def test_a_phone_is_captive_until_it_accepts_and_again_when_its_session_ends(
    world: World,
) -> None:
    phone = world.add_phone()
    world.wait_ready(phone)

    # Before acceptance: every probe and any http:// URL land at the portal.
    assert captive(phone.probes())
    assert phone.get(WEB, "/anything", "example.org").location == f"http://{BUS_IP}/"
    assert not [h for h in world.hits if h.startswith(WEB)]  # the internet saw nothing
    terms = phone.get(BUS_IP, "/")
    assert terms.status == 200 and "Nutzungsbedingungen" in terms.body
    assert phone.tcp(WEB, 443) is None  # HTTPS is not intercepted, just not let through
    assert phone.get(GARDEN, "/").body == f"internet {GARDEN}"  # the walled garden is open
    assert phone.ns.run(lambda: udp_echo(BUS_IP, 53))  # DNS to the bus
    assert phone.tcp(BUS_IP, 53) == "dns over tcp"

    # Acceptance lets the phone out, and the probes now reach the real probe servers.
    accepted = phone.post(BUS_IP, "/accept", {"accept": "yes", "lang": "en"})
    assert accepted.status == 303, accepted.body
    assert online(phone.probes())
    assert {f"{WEB} {path}" for path in ONLINE} <= set(world.hits)
    assert phone.get(WEB, "/").body == f"internet {WEB}"
    assert phone.tcp(WEB, 443) == "https"
    assert phone.ip in world.allowed_ips()

    # An agent restart (kill -9) keeps the session: the kernel still lets the phone out
    # while the agent is down, and the new agent recognises the session.
    world.kill_agent()
    assert online(phone.probes())
    world.start_agent()
    world.wait_ready(phone)
    api = json.loads(phone.get(BUS_IP, "/api/captive").body)
    assert api["captive"] is False and api["seconds-remaining"] > 3000
    assert online(phone.probes())
    assert phone.ip in world.allowed_ips()

    # Traffic keeps it alive past the idle timeout: the kernel counts bytes per client.
    until = time.monotonic() + IDLE_S * 1.5
    while time.monotonic() < until:
        assert phone.get(WEB, "/").body == f"internet {WEB}"
        time.sleep(0.5)
    assert phone.ip in world.allowed_ips()

    # Silence for longer than the idle timeout ends the session: captive again.
    wait_for(lambda: phone.ip not in world.allowed_ips(), 30, "the idle timeout")
    assert captive(phone.probes())
    assert json.loads(phone.get(BUS_IP, "/api/captive").body)["captive"] is True
    assert phone.tcp(WEB, 443) is None


def test_a_phone_never_reaches_the_agents_management_port_or_the_broker(world: World) -> None:
    phone = world.add_phone()
    world.wait_ready(phone)
    # The services are there: the bus itself reaches them.
    assert world.bus.run(lambda: tcp_banner(BUS_IP, 9100)) == "agent management"
    assert world.bus.run(lambda: tcp_banner(BROKER, 1883)) == "central broker"
    closed = [(BUS_IP, 9100), (BUS_IP, 1883), (BROKER, 1883), (BROKER, 80)]
    for stage in ("before acceptance", "after acceptance"):
        reached = {f"{ip}:{port}": phone.tcp(ip, port) for ip, port in closed}
        assert reached == dict.fromkeys(reached), stage
        if stage == "before acceptance":
            reply = phone.post(BUS_IP, "/accept", {"accept": "yes"})
            assert reply.status == 303, world.bus.sh("ip", "neigh") + world.log()
            assert phone.get(WEB, "/").body == f"internet {WEB}"  # it is online
    assert not [h for h in world.hits if h.startswith(BROKER)]


async def test_the_firewall_backend_loads_allows_lists_and_revokes_in_a_namespace() -> None:
    ns = Netns(f"bfp-{secrets.token_hex(3)}-fw")
    try:
        ns.sh("ip", "link", "add", "br0", "type", "bridge")
        rules = Ruleset(
            passenger_if="br0", address="10.42.0.1", port=8480, uplink_if="up0",
            garden=("192.0.2.0/24",), blocked=("198.51.100.7/32",), rate_kbytes=500,
        )  # fmt: skip
        fw = NftablesFirewall(rules, nft=("ip", "netns", "exec", ns.name, "nft"))
        assert await fw.listed() == []  # no table yet
        first, second = Client("10.42.0.7", "02:00:00:00:00:07"), Client("10.42.0.8", MAC8)
        await fw.load([(first, 120.0)])
        await fw.allow(second, 60.0)
        await fw.allow(second, 90.0)  # again: replaced, not an error
        assert sorted(a.client.ip for a in await fw.listed()) == ["10.42.0.7", "10.42.0.8"]
        await fw.revoke(first)
        await fw.revoke(first)  # already gone: not an error
        assert [a.client for a in await fw.listed()] == [second]
        await fw.load([])  # a reload replaces the table whole
        assert await fw.listed() == []
        ruleset = ns.sh("nft", "list", "ruleset")
        assert "limit rate over 500 kbytes/second" in ruleset and "masquerade" in ruleset
    finally:
        ns.close()


MAC8 = "02:00:00:00:00:08"
