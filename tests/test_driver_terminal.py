"""The driver's terminal in a real browser (Debian's Chromium via Playwright, 1280x800).

Two set-ups. A terminal alone on a free port, in a background thread with its own event loop
and a real outbox, for the gestures and the pending marks (the test plays central's receipt).
And a simulated bus with the real agent driving a Cairns trip, a real mosquitto and a
`busfleet central serve` process, for the round trips with central: a canned message arrives
with the bus's position, a message from dispatch is acknowledged and central has the time.
Screenshots (day and night) go to test-output/<test>/.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from busfleet import simbus
from busfleet.broker.launch import Broker
from onboard.config import AgentConfig, DriverSection
from onboard.driver import DriverTerminal
from onboard.journey.plan import plan_trip
from onboard.link.outbox import Outbox
from protocols import codec
from protocols.gtfs.feed import Feed, demo_trips, read_feed
from protocols.schemas import Event, Scalar
from tests.fleet_helpers import Procs, rows, wait_central_online, wait_for

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parent.parent
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
WAIT_MS = 15_000  # generous for a loaded machine; never a timing assertion
HHMM = r"\d\d:\d\d"


class ServedTerminal:
    """A DriverTerminal on a free port with a real outbox, served from a background thread."""

    def __init__(self, data_dir: Path) -> None:
        self.outbox = Outbox(data_dir / "agent.sqlite")
        self.online = False
        self.terminal = DriverTerminal(
            self.outbox,
            self._record,
            port=0,
            position=lambda: (-16.9203, 145.7710),
            online=lambda: self.online,
            tick_s=0.2,
        )
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        started: Future[None] = Future()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.result(timeout=10)
        self.origin = f"http://127.0.0.1:{self.terminal.port}"

    def _record(
        self, kind: str, data: dict[str, Scalar], *, severity: int = 0, t: float | None = None
    ) -> int:
        """As the agent's `record_event`."""
        event = Event(seq=0, t=t or time.time(), kind=kind, severity=severity, data=data)
        return self.outbox.append("alarm" if severity >= 3 else "event", codec.encode(event))

    def _run(self, started: Future[None]) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with self.terminal:
                    started.set_result(None)
                    await self._stop.wait()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                raise

        self.loop.run_until_complete(main())

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (the terminal and its SQLite are not thread-safe)."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=10)

    def events(self) -> list[tuple[int, Event]]:
        pending = self.call(lambda: self.outbox.pending(1000))
        return [(p.seq, codec.decode(Event, p.body)) for p in pending]

    def confirm_all(self) -> None:
        """Central's receipt for everything sent so far."""
        self.call(lambda: self.outbox.confirm([(1, 10**9)]))

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=10)
        self.loop.close()
        self.outbox.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedTerminal]:
    s = ServedTerminal(tmp_path)
    try:
        yield s
    finally:
        s.close()


def open_terminal(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(WAIT_MS)
    deadline = time.monotonic() + 30
    while True:
        try:
            page.goto(url)
            break
        except Exception:  # the agent's server is not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    expect(page.locator("body")).to_have_attribute("data-agent", "live")
    return page


def hold(page: Page, selector: str, seconds: float) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.wait_for_timeout(seconds * 1000)
    page.mouse.up()


def test_the_emergency_needs_a_long_hold_and_shows_only_a_small_pending_mark(
    browser: Browser, served: ServedTerminal, output_dir: Path
) -> None:
    page = open_terminal(browser, f"{served.origin}/driver?lang=en")
    hold(page, "#emergency", 0.6)  # a brush against the screen
    page.wait_for_timeout(2500)
    assert served.events() == []
    hold(page, "#emergency", 2.4)
    expect(page.locator("#emergency-status")).to_have_text(re.compile(f"^\u2026 {HHMM}$"))
    ((_, alarm),) = served.events()
    assert (alarm.kind, alarm.severity) == ("emergency", 4)
    assert (alarm.data["lat"], alarm.data["lon"]) == (-16.9203, 145.771)
    # Nothing on the page says "alarm": no list entry, no banner, only the little mark.
    assert "emergency" not in page.locator(".main").inner_text().lower()
    expect(page.locator("#sent li")).to_have_count(0)
    expect(page.locator("#uplink-text")).to_have_text("offline \u00b7 1 queued")
    page.screenshot(path=output_dir / "emergency-pending.png")
    served.online = True
    served.confirm_all()
    expect(page.locator("#emergency-status")).to_have_text(re.compile(f"^\u2713 {HHMM}$"))
    expect(page.locator("#uplink-text")).to_have_text("online")
    page.close()


def test_a_canned_message_needs_a_second_tap_and_stays_queued_until_central_has_it(
    browser: Browser, served: ServedTerminal, output_dir: Path
) -> None:
    page = open_terminal(browser, f"{served.origin}/driver?lang=en")
    button = page.locator('#canned button[data-code="full_bus"]')
    button.click()
    expect(button).to_have_text("Tap again: Bus full")
    page.wait_for_timeout(500)
    assert served.events() == []
    button.click()
    expect(page.locator("#sent li")).to_have_text([re.compile(f"Bus full{HHMM} queued")])
    ((_, event),) = served.events()
    assert (event.kind, event.data["code"], event.severity) == ("driver_message", "full_bus", 1)
    expect(button).to_have_text("Bus full")
    page.screenshot(path=output_dir / "canned-queued.png")
    served.confirm_all()
    expect(page.locator("#sent li")).to_have_text([re.compile(f"Bus full{HHMM} \u2713")])
    page.close()


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_another_site_cannot_raise_an_alarm_or_send_a_message(served: ServedTerminal) -> None:
    url = f"{served.origin}/driver/emergency"
    body = json.dumps({"id": "x"}).encode()
    json_type = {"Content-Type": "application/json"}
    assert post(url, body, json_type) == 403  # no Origin
    assert post(url, body, {**json_type, "Origin": "http://evil.example"}) == 403
    form = {"Content-Type": "text/plain", "Origin": served.origin}  # a form needs no preflight
    assert post(url, body, form) == 415
    canned = f"{served.origin}/driver/canned"
    assert post(canned, b'{"code": "coffee"}', {**json_type, "Origin": served.origin}) == 400
    assert served.events() == []
    assert post(url, body, {**json_type, "Origin": served.origin}) == 200
    assert [e.kind for _, e in served.events()] == ["emergency"]


# -- the live round trip with central ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def busfleet(*argv: str) -> str:
    """A dispatcher's command line (its own process); returns what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "busfleet.cli", *argv],
        check=True,
        timeout=60,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return done.stdout


def _run_until_cancelled(
    loop: asyncio.AbstractEventLoop, spec: simbus.SimBusSpec, feed: Feed
) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(simbus.run_sim_bus(spec, feed))
    except (asyncio.CancelledError, BaseExceptionGroup):
        pass
    finally:
        loop.close()


def test_a_driving_bus_s_terminal_talks_with_central_both_ways(
    browser: Browser,
    mosquitto: Broker,
    tmp_path: Path,
    output_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed = read_feed(simbus.DEFAULT_GTFS)
    port = free_port()
    original = simbus.agent_config

    def with_terminal(spec: simbus.SimBusSpec, gps: str, can: str) -> AgentConfig:
        return dataclasses.replace(original(spec, gps, can), driver=DriverSection(port=port))

    monkeypatch.setattr(simbus, "agent_config", with_terminal)
    trip = demo_trips(feed, 1)[0]
    spec = simbus.SimBusSpec(
        bus_id="bus-088",
        trip_id=trip,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        data_dir=tmp_path / "bus",
        rate_hz=2.0,
    )
    procs = Procs(tmp_path, mosquitto.port)
    procs.central()
    central = ["--db", str(tmp_path / "central.sqlite"), "--mqtt-port", str(mosquitto.port)]
    db = tmp_path / "central.sqlite"
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=_run_until_cancelled, args=(loop, spec, feed), daemon=True)
    runner.start()
    try:
        page = open_terminal(browser, f"http://127.0.0.1:{port}/driver?lang=en")
        wait_for(
            lambda: rows(db, "SELECT 1 FROM reported WHERE bus = ?", spec.bus_id), 30, "the bus"
        )
        wait_central_online(mosquitto)  # the CLI tools ask it
        busfleet("central", "assign", spec.bus_id, "--trip", trip, *central)
        plan = plan_trip(feed, trip, date.today())
        # Trip, block, next stop, adherence and the path ahead, from the agent's own tracker.
        expect(page.locator("#trip")).to_have_text(trip)
        expect(page.locator("#destination")).to_have_text(plan.headsign)
        expect(page.locator("#next-stop")).to_have_text(
            re.compile("|".join(re.escape(s.name) for s in plan.stops))
        )
        expect(page.locator("#adherence-text")).to_have_text(re.compile(r"^[+\u2212]?\d+[:h]\d\d$"))
        expect(page.locator("#adherence")).to_have_attribute(
            "data-band", re.compile("early|on_time|late|very_late")
        )
        expect(page.locator("#path-ahead")).to_have_attribute("points", re.compile(r"\d"))
        expect(page.locator("body")).to_have_attribute("data-online", "true")

        # A canned message reaches central with where the bus is.
        button = page.locator('#canned button[data-code="delay_traffic"]')
        button.click()
        button.click()
        expect(page.locator("#sent li")).to_have_text([re.compile(r"Delay: traffic.*\u2713")])
        ((data,),) = rows(db, "SELECT data FROM events WHERE kind = 'driver_message'")
        sent = json.loads(data)
        assert sent["code"] == "delay_traffic" and sent["trip"] == trip
        offset = min(o for _, o in plan.path.segment_projections(sent["lat"], sent["lon"]))
        assert offset < 100.0  # on the street the bus drives

        # A message from dispatch: delivered, shown, acknowledged; central has the time.
        out = busfleet("central", "message-driver", spec.bus_id, "Please call dispatch", *central)
        msg_id = out.split()[-1]
        item = page.locator(f'#messages li[data-id="{msg_id}"]')
        expect(item.locator(".text")).to_have_text("Please call dispatch")
        expect(page.locator("#unacked-n")).to_have_text("1")
        page.screenshot(path=output_dir / "day.png")
        page.locator("#theme").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "night")
        page.screenshot(path=output_dir / "night.png")
        before = time.time()
        item.locator("button.ack").click()
        expect(item.locator(".meta")).to_have_text(re.compile(f"acknowledged {HHMM} \u2713"))
        after = time.time()
        ((t, data),) = rows(db, "SELECT t, data FROM events WHERE kind = 'driver_ack'")
        assert json.loads(data)["id"] == msg_id and before <= t <= after
        log = [
            json.loads(line)
            for line in busfleet("central", "driver-log", *central).split("\n")
            if line
        ]
        to_driver = next(e for e in log if e["what"] == "to_driver")
        assert (to_driver["id"], to_driver["status"], to_driver["acked"]) == (
            msg_id,
            "delivered",
            t,
        )
        assert {e["what"] for e in log} == {"to_driver", "driver_ack", "from_driver"}
        page.screenshot(path=output_dir / "night-acknowledged.png")
        page.close()
    finally:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        runner.join(timeout=20)
        procs.close()
