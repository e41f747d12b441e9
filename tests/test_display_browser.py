"""The passenger display in a real browser: Debian's Chromium, driven by Playwright.

The display server runs on a free loopback port in a background thread with its own event
loop (as in the agent); the test thread feeds it states and looks at the pages, which save
screenshots to test-output/<test>/. The last test drives a simulated bus with the real agent
and a real mosquitto, and a message from central appears on the bus's page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, expect, sync_playwright

from busfleet import simbus
from busfleet.broker.launch import Broker
from hw_sim.drive import Drive
from onboard.config import AgentConfig, DisplaySection
from onboard.display import AdSlot, Display, JourneyView, NextStop
from onboard.journey.plan import plan_trip
from onboard.journey.tracker import JourneyTracker
from protocols.gtfs.feed import Feed, demo_trips, read_feed
from protocols.schemas import PassengerMessage
from tests.fleet_helpers import Procs, wait_central_online

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parent.parent
SIZES = {"landscape": (1920, 1080), "strip": (1920, 360)}
WAIT_MS = 15_000  # generous: a loaded CI machine; never a timing assertion


class ServedDisplay:
    """A Display on a free port, served by an event loop in a background thread."""

    def __init__(self, routes: Sequence[web.RouteDef] = ()) -> None:
        self.offset = 0.0  # added to the server's clock, to make messages expire on demand
        self.display = Display(port=0, clock=lambda: time.time() + self.offset, tick_s=0.2)
        self.display.add_routes(routes)
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        started: Future[None] = Future()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.result(timeout=10)
        self.url = f"http://127.0.0.1:{self.display.port}/display"

    def _run(self, started: Future[None]) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with self.display:
                    started.set_result(None)
                    await self._stop.wait()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                raise

        self.loop.run_until_complete(main())

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (the Display is not thread-safe) and return its result."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=10)

    def update(self, **changes: Any) -> None:
        self.call(lambda: self.display.update(**changes))

    def reset(self) -> None:
        self.offset = 0.0
        self.call(lambda: self.display.update(**_blank()))

    def close(self) -> None:
        stop = self._stop
        if stop is not None:
            self.loop.call_soon_threadsafe(stop.set)
        self.thread.join(timeout=10)
        self.loop.close()


def _blank() -> dict[str, Any]:
    return {
        "journey": None,
        "messages": (),
        "fallback_line": "",
        "fallback_destination": "",
        "stop_requested": False,
        "online": False,
        "diversion": None,
        "ad": None,
        "languages": ("de",),
        "cycle_s": 8.0,
    }


STOPS = ["Lake Street", "Sheridan Street", "Florence Street", "Spence Street", "Cairns Central"]


def journey(passed: int, *, delay_s: float = 0.0) -> JourneyView:
    """The journey after the bus has passed `passed` of STOPS."""
    now = time.time()
    stops = tuple(
        NextStop(f"s{i}", name, now + 120 * (i - passed + 1))
        for i, name in enumerate(STOPS)
        if i >= passed
    )
    return JourneyView(line="110", destination="Smithfield", next_stops=stops, delay_s=delay_s)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        expect.set_options(timeout=WAIT_MS)  # generous for a loaded machine; reset below
        try:
            yield b
        finally:
            expect.set_options(timeout=5_000)  # Playwright's default
            b.close()


@pytest.fixture(scope="module")
def feed() -> Feed:
    return read_feed(simbus.DEFAULT_GTFS)


@pytest.fixture(scope="module")
def served() -> Iterator[ServedDisplay]:
    s = ServedDisplay()
    yield s
    s.close()


@pytest.fixture
def display(served: ServedDisplay) -> ServedDisplay:
    served.reset()
    return served


def open_page(browser: Browser, url: str, layout: str) -> Page:
    width, height = SIZES[layout]
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-agent", "up", timeout=WAIT_MS)
    page.evaluate("window.loadedOnce = true")  # gone if the page ever reloads
    page.set_default_timeout(WAIT_MS)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.loadedOnce === true"))


@pytest.mark.parametrize("layout", ["landscape", "strip"])
def test_both_layouts_show_line_destination_next_stop_and_status(
    browser: Browser, display: ServedDisplay, layout: str, output_dir: Path
) -> None:
    display.update(journey=journey(0, delay_s=240.0), stop_requested=True, online=True)
    page = open_page(browser, f"{display.url}/{layout}", layout)
    expect(page.locator("#line")).to_have_text("110")
    expect(page.locator("#destination")).to_have_text("Smithfield")
    expect(page.locator("#next-stop")).to_have_text("Lake Street")
    expect(page.locator("#next-minutes")).to_have_text("2\u00a0min")
    expect(page.locator("#stop-requested")).to_be_visible()
    expect(page.locator("#stop-requested")).to_have_text("Halt angefordert")
    expect(page.locator("#delay")).to_contain_text("+4 min")
    # The browser's clock: this minute, or the next if it turns while the page is looked at.
    minutes = {time.strftime("%H:%M", time.localtime(time.time() + d)) for d in (0, 60)}
    clock = re.compile("^(" + "|".join(sorted(minutes)) + ")$")
    expect(page.locator("#clock")).to_have_text(clock)
    page.screenshot(path=output_dir / f"{layout}.png")
    assert page.errors == []  # type: ignore[attr-defined]
    page.close()


def test_the_next_stop_changes_live_as_a_simulated_bus_passes_stops(
    browser: Browser, display: ServedDisplay, feed: Feed, output_dir: Path
) -> None:
    """The hw_sim drive along a real Cairns trip (simulated time, stepped fast) feeds the real
    journey tracker; each change of its current stop goes to the pages, which follow live."""
    trip = demo_trips(feed, 1)[0]
    plan = plan_trip(feed, trip, date.today())
    path, stops = feed.trip_path(trip)
    t = plan.first_departure_t - 3
    drive = Drive(path, [(s.stop_id, d) for s, d in stops], start_t=t, seed=3)
    tracker = JourneyTracker(plan, now=t)
    display.call(lambda: display.display.apply_journey(tracker.state))
    landscape = open_page(browser, f"{display.url}/landscape", "landscape")
    strip = open_page(browser, f"{display.url}/strip", "strip")
    seen: list[tuple[int, bool]] = []
    while len(seen) < 6 and t < plan.last_arrival_t:
        t += 1.0
        truth = drive.step(t)
        tracker.update(
            t,
            truth.lat,
            truth.lon,
            speed=truth.speed_mps,
            track=truth.heading_deg,
            doors_open=truth.doors_open,
        )
        state = tracker.state
        if seen and seen[-1] == (state.stop_index, state.at_stop):
            continue
        seen.append((state.stop_index, state.at_stop))
        for page in (landscape, strip):
            page.clock.set_fixed_time(t)  # the pages' clock follows the simulated time
        display.call(functools.partial(display.display.apply_journey, state))
        label = "Aktueller Halt" if state.at_stop else "Nächster Halt"
        for page in (landscape, strip):
            expect(page.locator("#next-stop")).to_have_attribute("data-stop-id", state.stop_id)
            expect(page.locator("#next-stop")).to_have_text(state.stop_name)
            expect(page.locator("#next-label")).to_have_text(label)
        later = [c.name for c in state.upcoming[1:5]]
        expect(landscape.locator("#stops .name")).to_have_text(later)
        name = f"stop-{state.stop_index}-{'at' if state.at_stop else 'to'}.png"
        landscape.screenshot(path=output_dir / f"landscape-{name}")
        strip.screenshot(path=output_dir / f"strip-{name}")
    indexes = [index for index, _ in seen]
    assert len(set(indexes)) >= 3, f"the bus passed too few stops: {seen}"
    assert indexes == sorted(indexes)
    assert not_reloaded(landscape) and not_reloaded(strip)
    landscape.close()
    strip.close()


def test_a_message_from_central_appears_and_disappears_when_its_validity_ends(
    browser: Browser, display: ServedDisplay, output_dir: Path
) -> None:
    display.update(journey=journey(1))
    page = open_page(browser, f"{display.url}/landscape", "landscape")
    strip = open_page(browser, f"{display.url}/strip", "strip")
    now = time.time()
    message = PassengerMessage(
        id="works",
        text_de="Ab 20 Uhr Umleitung über die Mulgrave Road",
        text_en="From 8 pm diverted via Mulgrave Road",
        priority=2,
        valid_from=now - 1,
        valid_to=now + 120,
    )
    display.update(messages=(message,))
    for p in (page, strip):
        expect(p.locator("#announcements li")).to_have_text([message.text_de])
    page.screenshot(path=output_dir / "landscape-with-message.png")
    strip.screenshot(path=output_dir / "strip-with-message.png")
    display.offset = 121.0  # the bus's clock passes valid_to; no new input arrives
    for p in (page, strip):
        expect(p.locator("#announcements li")).to_have_count(0)
        expect(p.locator("#next-stop")).to_have_text(STOPS[1])
    page.screenshot(path=output_dir / "landscape-after-expiry.png")
    assert not_reloaded(page)
    page.close()
    strip.close()


def test_german_english_and_alternating_languages(
    browser: Browser, display: ServedDisplay, output_dir: Path
) -> None:
    message = PassengerMessage(id="m", text_de="Bitte vorne einsteigen", text_en="Board at front")
    display.update(journey=journey(0), messages=(message,), stop_requested=True)
    english = open_page(browser, f"{display.url}/landscape?lang=en", "landscape")
    expect(english.locator("#next-label")).to_have_text("Next stop")
    expect(english.locator("#stop-requested")).to_have_text("Stop requested")
    expect(english.locator("#announcements li")).to_have_text(["Board at front"])
    english.screenshot(path=output_dir / "landscape-en.png")
    german = open_page(browser, f"{display.url}/landscape", "landscape")
    expect(german.locator("#next-label")).to_have_text("Nächster Halt")
    expect(german.locator("#announcements li")).to_have_text(["Bitte vorne einsteigen"])
    both = open_page(browser, f"{display.url}/strip?lang=de,en&cycle=2", "strip")
    for lang, label in (("de", "Nächster Halt"), ("en", "Next stop"), ("de", "Nächster Halt")):
        expect(both.locator("html")).to_have_attribute("lang", lang)
        expect(both.locator("#next-label")).to_have_text(label)
    for p in (english, german, both):
        p.close()


def test_a_page_without_lang_follows_the_agents_display_language_live(
    browser: Browser, display: ServedDisplay
) -> None:
    display.update(journey=journey(0))
    page = open_page(browser, f"{display.url}/landscape", "landscape")
    pinned = open_page(browser, f"{display.url}/strip?lang=de", "strip")
    expect(page.locator("#next-label")).to_have_text("Nächster Halt")
    # display.language set from central (onboard/remote_config.py calls this): no reload.
    display.call(lambda: display.display.set_language("en", 8.0))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#next-label")).to_have_text("Next stop")
    version = page.locator("body").get_attribute("data-version")
    expect(pinned.locator("body")).to_have_attribute("data-version", str(version))
    expect(pinned.locator("#next-label")).to_have_text("Nächster Halt")  # its URL's ?lang= wins
    display.call(lambda: display.display.set_language("de,en", 2.0))
    for lang, label in (("de", "Nächster Halt"), ("en", "Next stop"), ("de", "Nächster Halt")):
        expect(page.locator("html")).to_have_attribute("lang", lang)
        expect(page.locator("#next-label")).to_have_text(label)
    assert not_reloaded(page) and page.errors == []  # type: ignore[attr-defined]
    for p in (page, pinned):
        p.close()


def test_text_from_central_is_shown_as_text_never_as_markup(
    browser: Browser, display: ServedDisplay
) -> None:
    hostile = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>"
    display.update(
        journey=dataclasses.replace(journey(0), destination=hostile),
        messages=(PassengerMessage(id="x", text_de=hostile),),
    )
    page = open_page(browser, f"{display.url}/landscape", "landscape")
    expect(page.locator("#announcements li")).to_have_text([hostile])
    expect(page.locator("#destination")).to_have_text(hostile)
    assert page.locator("#announcements img, #announcements b, #destination img").count() == 0
    assert page.title() != "pwned"
    page.close()


def test_a_local_ad_fills_the_slot_and_a_page_keeps_working_when_the_agent_goes_away(
    browser: Browser, output_dir: Path
) -> None:
    """Its own server, to stop it: the page keeps the last state and still expires the
    message with the browser's clock."""
    own = ServedDisplay([web.get("/media/spring.svg", _svg_ad)])
    now = time.time()
    own.update(
        journey=journey(2),
        ad=AdSlot("spring", "/media/spring.svg"),
        messages=(PassengerMessage(id="m", text_de="Gute Fahrt", valid_to=now + 60),),
    )
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.clock.install(time=now)
    page.goto(f"{own.url}/landscape")
    page.clock.run_for(1000)
    expect(page.locator("#announcements li")).to_have_text(["Gute Fahrt"], timeout=WAIT_MS)
    expect(page.locator("#ad img")).to_have_attribute("src", "/media/spring.svg")
    assert page.locator("#ad img").evaluate("img => img.complete && img.naturalWidth > 0")
    own.close()
    expect(page.locator("body")).to_have_attribute("data-agent", "down", timeout=WAIT_MS)
    page.clock.run_for(61_000)  # the browser's clock passes valid_to, nobody tells it
    expect(page.locator("#announcements li")).to_have_count(0)
    expect(page.locator("#next-stop")).to_have_text(STOPS[2])
    page.screenshot(path=output_dir / "landscape-agent-gone.png")
    page.close()


AD_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="800" viewBox="0 0 640 800">'
    '<rect width="640" height="800" fill="#0a5"/>'
    '<text x="320" y="380" font-size="72" text-anchor="middle" fill="#fff" '
    'font-family="DejaVu Sans">Frühlingsfest</text>'
    '<text x="320" y="470" font-size="48" text-anchor="middle" fill="#ff0" '
    'font-family="DejaVu Sans">im Stadtpark</text></svg>'
)


async def _svg_ad(request: web.Request) -> web.Response:
    """What the ads runtime mounts on the display's origin (onboard/ads/http.py)."""
    return web.Response(text=AD_SVG, content_type="image/svg+xml")


# -- live: a simulated bus with the real agent, a real broker, a message from central ------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_message_from_central_reaches_the_display_of_a_driving_simulated_bus(
    browser: Browser,
    mosquitto: Broker,
    tmp_path: Path,
    output_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    feed: Feed,
) -> None:
    port = free_port()
    original = simbus.agent_config

    def with_display(spec: simbus.SimBusSpec, gps: str, can: str) -> AgentConfig:
        config = original(spec, gps, can)
        return dataclasses.replace(config, display=DisplaySection(port=port))

    monkeypatch.setattr(simbus, "agent_config", with_display)
    trip = demo_trips(feed, 1)[0]
    spec = simbus.SimBusSpec(
        bus_id="bus-077",
        trip_id=trip,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        data_dir=tmp_path / "bus",
        rate_hz=2.0,
    )
    procs = Procs(tmp_path, mosquitto.port)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=_run_until_cancelled, args=(loop, spec, feed), daemon=True)
    runner.start()
    try:
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        page.set_default_timeout(30_000)
        _goto_when_listening(page, f"http://127.0.0.1:{port}/display/landscape")
        central = [
            "--db",
            str(tmp_path / "central.sqlite"),
            "--mqtt-host",
            mosquitto.host,
            "--mqtt-port",
            str(mosquitto.port),
        ]
        procs.central()  # the CLI tools ask the running central, which publishes
        wait_central_online(mosquitto)
        route = feed.routes[feed.trips[trip].route_id]
        busfleet(
            "central", "assign", spec.bus_id, "--trip", trip, "--route", route.route_id, *central
        )
        # The assignment's route id, or the short name once a journey tracker runs on board.
        line = re.compile(f"^({re.escape(route.route_id)}|{re.escape(route.short_name)})$")
        expect(page.locator("#line")).to_have_text(line)
        expect(page.locator("body")).to_have_attribute("data-online", "true")
        text = "Willkommen an Bord von Bus 77"
        message = ["central", "message", "--bus", spec.bus_id, "--de", text, "--until", "+10s"]
        busfleet(*message, "--en", "Welcome aboard bus 77", *central)
        expect(page.locator("#announcements li")).to_have_text([text])
        page.screenshot(path=output_dir / "live-landscape.png")
        # Its validity ends: the bus hides it by its own clock.
        expect(page.locator("#announcements li")).to_have_count(0, timeout=30_000)
        page.screenshot(path=output_dir / "live-landscape-expired.png")
        page.close()
    finally:
        procs.close()
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        runner.join(timeout=20)


def busfleet(*argv: str) -> None:
    """The dispatcher's command line, as a dispatcher runs it (its own process)."""
    subprocess.run([sys.executable, "-m", "busfleet.cli", *argv], check=True, timeout=60, cwd=REPO)


def _run_until_cancelled(
    loop: asyncio.AbstractEventLoop, spec: simbus.SimBusSpec, feed: Any
) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(simbus.run_sim_bus(spec, feed))
    except (asyncio.CancelledError, BaseExceptionGroup):
        pass
    finally:
        loop.close()


def _goto_when_listening(page: Page, url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            page.goto(url)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
