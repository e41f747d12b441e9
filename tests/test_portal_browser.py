"""The portal in a real browser: Debian's Chromium at a phone's size (390 x 844), via Playwright.

The portal (null firewall, loopback) runs in a background thread with its own event loop; the
test walks through it like a passenger whose phone just joined the bus Wi-Fi: the OS probe
lands on the terms page, the passenger switches to English, accepts, sees the bus's status,
the probe now says online, and sends feedback. Screenshots go to test-output/<test>/.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from onboard.portal import (
    AdSlot,
    Announcement,
    NullFirewall,
    Portal,
    PortalContent,
    Settings,
    Stop,
    make_app,
)
from onboard.portal.store import SessionStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
WAIT_MS = 15_000  # generous for a loaded CI machine; never a timing assertion


# Not a skip: CI has everything installed, so a missing browser is a failure that says why.
@pytest.fixture(autouse=True)
def _chromium_is_installed() -> None:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), "needs Debian chromium (./run setup)"


CONTENT = PortalContent(
    line="131",
    destination="Cairns City",
    next_stops=(Stop("Lake St & Shields St"), Stop("Cairns Central"), Stop("Manunda")),
    announcements=(Announcement("Umleitung ab Montag: Haltestelle Shields St entfällt",
                                "Diversion from Monday: Shields St stop closed"),),
    ad=AdSlot("Stadtfest", "Samstag ab 10 Uhr auf dem Marktplatz"),
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedPortal:
    """A portal on a free loopback port, served by an event loop in a background thread."""

    def __init__(self, db: Path) -> None:
        self.port = free_port()
        self.feedback: list[tuple[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.portal = Portal(
            Settings(public_url=f"http://127.0.0.1:{self.port}/", operator="Stadtwerke Busstadt"),
            NullFirewall(),
            SessionStore(db, boot_id="browser-test"),
            content=lambda: CONTENT,
            on_feedback=lambda c, t: self.feedback.append((c, t)),
        )
        self.server = TestServer(make_app(self.portal), host="127.0.0.1", port=self.port)
        self._call(self._start())
        self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        await self.portal.start()
        await self.server.start_server()

    def _call(self, coro: object) -> object:
        future: Future[object] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout=30)

    def close(self) -> None:
        self._call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.portal.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedPortal]:
    s = ServedPortal(tmp_path / "portal.sqlite")
    try:
        yield s
    finally:
        s.close()


def phone_page(browser: Browser, tmp_path: Path) -> Page:
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="de-DE"
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def fits_the_phone(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_a_passenger_walks_from_the_probe_through_the_terms_to_online(
    browser: Browser, served: ServedPortal, output_dir: Path, tmp_path: Path
) -> None:
    page = phone_page(browser, tmp_path)
    probe = f"{served.url}/generate_204"

    # The phone's probe is redirected: the portal sheet shows the terms, in German.
    page.goto(probe)
    assert page.url == served.url + "/"
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("heading", name="Nutzungsbedingungen")).to_be_visible()
    expect(page.locator("#go")).to_be_in_viewport()  # accepting needs no scrolling
    assert fits_the_phone(page)
    page.screenshot(path=str(output_dir / "1-probe-lands-on-terms-de.png"), full_page=True)

    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", name="Terms of use")).to_be_visible()
    expect(page.get_by_text("Stadtwerke Busstadt")).to_be_visible()
    page.screenshot(path=str(output_dir / "2-terms-en.png"), full_page=True)

    # Accepting without the box ticked is stopped by the form itself.
    page.locator("#go").click()
    expect(page.get_by_role("heading", name="Terms of use")).to_be_visible()
    page.get_by_label("I accept the terms of use").check()
    page.locator("#go").click()

    expect(page.locator("#state")).to_contain_text("You are online")
    expect(page.locator("#trip")).to_contain_text("131")
    expect(page.locator("#trip")).to_contain_text("Lake St & Shields St")
    expect(page.locator("#trip")).to_contain_text("Diversion from Monday")
    expect(page.locator("#ad")).to_contain_text("Stadtfest")
    assert fits_the_phone(page)
    page.screenshot(path=str(output_dir / "3-online-status.png"), full_page=True)

    # The probe (sent by the OS, not the browser) now says online: Android's 204.
    assert page.request.get(probe, max_redirects=0).status == 204

    # Feedback to the city.
    page.goto(f"{served.url}/status?lang=en")
    page.get_by_role("link", name="Feedback to the city").click()
    page.get_by_label("Topic (optional)").select_option("wifi")
    page.get_by_label("Your message").fill("Fast Wi-Fi, thank you!")
    page.screenshot(path=str(output_dir / "4-feedback-form.png"), full_page=True)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#thanks")).to_be_visible()
    page.screenshot(path=str(output_dir / "5-feedback-sent.png"), full_page=True)
    assert served.feedback == [("wifi", "Fast Wi-Fi, thank you!")]
    page.context.close()


def test_hostile_feedback_stays_text_in_the_browser(
    browser: Browser, served: ServedPortal, output_dir: Path, tmp_path: Path
) -> None:
    page = phone_page(browser, tmp_path)
    page.goto(f"{served.url}/feedback?lang=en")
    hostile = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    page.get_by_label("Your message").fill(hostile)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#thanks")).to_be_visible()
    expect(page.locator("blockquote")).to_have_text(hostile)  # shown as the text it is
    assert page.evaluate("window.pwned") is None
    page.reload()  # the browser sends the same form again: still one message
    expect(page.locator("#thanks")).to_be_visible()
    assert served.feedback == [("", hostile)]
    page.screenshot(path=str(output_dir / "hostile-feedback.png"), full_page=True)
    page.context.close()
