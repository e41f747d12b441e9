"""`busfleet central dash --web` in a real browser: a real mosquitto, central and agent, the
web dashboard as its own process, and headless Chromium that opens it and sees the fleet
table with the bus in it. xterm.js paints the terminal on a canvas, so the test reads what it
paints from xterm's screen buffer (the Terminal object, caught as textual-serve's page makes
it). A websocket from a page of another origin is refused, and so is a second session while
one is open (one broker account, one connection); stopping the server ends the dashboard
process of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.sync_api import sync_playwright

from busfleet.broker.launch import Broker, free_port, mosquitto_path, run_mosquitto
from protocols import topics
from tests.fleet_helpers import Procs, first_message, wait_for

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BUS = "bus-web1"
WAIT_MS = 60_000  # generous for a loaded machine; never a timing assertion

# textual-serve's page keeps its xterm.js Terminal in a closure; it assigns it as
# `this.terminal = new Terminal(...)`. A setter on Object.prototype catches it (and then
# steps aside), so the test reads the screen the page paints without changing the page.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    if (value && value.buffer && !window.__terminal) window.__terminal = value;
    Object.defineProperty(this, "terminal", {
      value, writable: true, configurable: true, enumerable: true,
    });
  },
});
"""
SCREEN_LINES = """() => {
  const t = window.__terminal;
  if (!t) return [];
  const b = t.buffer.active, lines = [];
  for (let i = 0; i < t.rows; i++) {
    const line = b.getLine(b.viewportY + i);
    lines.push(line ? line.translateToString(true) : "");
  }
  return lines;
}"""


@pytest.fixture(autouse=True)
def _mosquitto_is_installed() -> None:
    assert mosquitto_path(), "mosquitto is not installed (./run setup installs it)"


@dataclass
class City:
    broker: Broker
    procs: Procs
    workdir: Path


@pytest.fixture
def city(tmp_path: Path) -> Iterator[City]:
    with run_mosquitto(tmp_path / "mosquitto") as broker:
        procs = Procs(tmp_path, broker.port)
        try:
            procs.central()
            first_message(broker, topics.central_stats(), 30)  # central is subscribed
            config = tmp_path / f"{BUS}.toml"
            config.write_text(  # no displays, no driver terminal: no ports to fight over
                f'[bus]\nid = "{BUS}"\ndata_dir = "{tmp_path / BUS}"\n'
                f"[mqtt]\nport = {broker.port}\nbackoff_max_s = 2.0\ninsecure_dev_broker = true\n"
                '[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
                "[display]\nenabled = false\n[driver]\nenabled = false\n"
            )
            procs.start(BUS, "agent", "--config", str(config))
            first_message(broker, topics.reported(BUS), 30)
            yield City(broker, procs, tmp_path)
        finally:
            procs.close()


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            found.update(int(c) for c in (task / "children").read_text().split())
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def handshake_status(url: str, origin: str) -> int:
    """The HTTP status a websocket handshake from a page of `origin` gets (101: accepted);
    in a thread of its own (Playwright's sync API runs an event loop in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _handshake(url, origin)).result(60)


async def _handshake(url: str, origin: str) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers={"Origin": origin}) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_the_web_dashboard_shows_the_fleet_table_in_chromium(city: City, output_dir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = city.workdir / "web.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "busfleet.cli", "central", "dash", "--web"),
                *("--port", str(port), "--name", "dispatcher"),
                *("--mqtt-host", city.broker.host, "--mqtt-port", str(city.broker.port)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        said = wait_for(
            lambda: "serving on" in log_path.read_text() and log_path.read_text(), 30, "serving"
        )
        assert f"serving on {url}" in said and "NO LOGIN" in said, said

        evil = handshake_status(f"ws://127.0.0.1:{port}/ws", "http://evil.example")
        assert evil == 403, "a page of another web site may open a dashboard session"

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1900, "height": 900})
                elsewhere: list[str] = []  # the page must load nothing from another site

                def only_here(route: Any) -> None:
                    if route.request.url.startswith(url.rstrip("/").rsplit(":", 1)[0]):
                        route.continue_()
                    else:
                        elsewhere.append(route.request.url)
                        route.abort()

                page.route("**/*", only_here)
                page.add_init_script(CATCH_TERMINAL)
                page.goto(url)
                page.wait_for_function(
                    f"""() => {{
                      const lines = ({SCREEN_LINES})();
                      return lines.some(l => /\\bBus\\b/.test(l) && /\\bStatus\\b/.test(l))
                        && lines.some(l => l.includes("{BUS}"));
                    }}""",
                    timeout=WAIT_MS,
                )
                lines: list[str] = page.evaluate(SCREEN_LINES)
                assert elsewhere == [], "the page loaded something from another site"
                page.screenshot(path=str(output_dir / "web-dashboard.png"))
                (output_dir / "web-dashboard.txt").write_text("\n".join(lines))
                header = next(line for line in lines if "Bus" in line and "Status" in line)
                row = next(line for line in lines if BUS in line)
                assert header.index("Bus") <= row.index(BUS), (header, row)
                assert page.locator("body.-first-byte").count() == 1  # textual-serve's sign

                second = handshake_status(f"ws://127.0.0.1:{port}/ws", url)
                assert second == 503, "a second session under the one broker account"

                sessions = children(server.pid)
                assert len(sessions) == 1, f"one dashboard process per session: {sessions}"
                # stop the server while the session is open: its dashboard process ends too
                server.send_signal(signal.SIGTERM)
                assert server.wait(30) == 0, log_path.read_text()
                wait_for(lambda: not any(alive(s) for s in sessions), 30, "the session's end")
            finally:
                browser.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()
    assert os.path.exists(output_dir / "web-dashboard.png")


# -- without a browser: the command each session runs, the options it refuses ---------------


def test_the_session_command_is_the_argument_list_whatever_its_text() -> None:
    from central.dashboard.web import DashboardServer

    argv = ["/opt/bus fleet/python", "-m", "busfleet.cli", "central", "dash"]
    argv += ["--config", '/etc/busfleet/it\'s $(touch x); `id` "q".toml', "--name", "a;b|c&"]
    server = DashboardServer(argv, host="127.0.0.1", port=8101, public_url=None)
    assert shlex.split(server.command) == argv
    assert server.origin == "http://127.0.0.1:8101"


@pytest.mark.parametrize(
    ("public_url", "origin"),
    [
        ("https://Dash.City.example/alice/", "https://dash.city.example"),
        ("https://dash.city.example:443/alice", "https://dash.city.example"),
        ("http://[::1]:8101", "http://[::1]:8101"),
    ],
)
def test_sessions_are_accepted_from_pages_of_the_public_url(public_url: str, origin: str) -> None:
    from central.dashboard.web import origin_of

    assert origin_of(public_url) == origin


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--public-url", "ftp://dash.city.example"], "is not an http:// or https:// URL"),
        (["--public-url", "https://dash:99999"], "public URL"),
        (["--port", "0"], "is not a TCP port"),
        (["--sessions", "0"], "between 1 and 100"),
    ],
)
def test_an_option_it_cannot_serve_with_is_said_in_one_line(options: list[str], said: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "busfleet.cli", "central", "dash", "--web", *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_port_taken_is_said_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "busfleet.cli", "central", "dash", "--web", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done
    assert f"cannot serve on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "serving on" not in done.stderr, done.stderr
