"""axe-core on the three pages people read in the bus, in Debian's Chromium via Playwright.

The passenger display (both layouts, German and English, with a journey, announcements, an ad
and a diversion), the Wi-Fi portal on a phone (terms, errors, online, feedback) and the driver's
terminal (a trip, a message from dispatch, the emergency control; German and English) are
opened in their real states, served by their real servers; axe-core (axe-playwright-python)
runs on each. Every result is written to test-output/axe/<page>.json (violations by impact,
rule ids, the elements; what axe left undecided) beside a screenshot of the state checked; a
serious or critical violation fails the test. The checker itself is
checked on a small page with known faults, served the same way.

One browser for the whole file (a module fixture); the servers are module fixtures too.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from onboard.config import AgentConfig, DisplaySection
from onboard.display import AdSlot
from onboard.driver import DriverTerminal
from onboard.driver.model import CANNED
from onboard.journey.plan import plan_trip
from onboard.journey.tracker import JourneyTracker
from onboard.remote_config import LIVE
from protocols.gtfs.feed import demo_trips, read_feed
from protocols.schemas import Command, PassengerMessage
from tests.test_display_browser import CHROMIUM_ARGS, SIZES, ServedDisplay, journey
from tests.test_driver_terminal import VIEWPORT, ServedTerminal
from tests.test_portal_browser import PHONE, ServedPortal

REPO = Path(__file__).resolve().parent.parent
AXE_OUT = REPO / "test-output" / "axe"
WAIT_MS = 15_000  # generous for a loaded machine; never a timing assertion
FAILING = ("serious", "critical")
IMPACTS = ("critical", "serious", "moderate", "minor")


# -- the checker -----------------------------------------------------------------------------


def axe_record(page: Page, name: str) -> dict[str, Any]:
    """Run axe-core on the page as it is now; write test-output/axe/<name>.json; return it."""
    response = Axe().run(page, options={"resultTypes": ["violations", "incomplete"]}).response
    violations = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [{"target": n["target"], "html": n["html"][:300]} for n in v["nodes"]],
        }
        for v in response["violations"]
    ]
    record = {
        "page": name,
        "url": page.url,
        "axe": response.get("testEngine", {}).get("version", ""),
        "by_impact": {
            impact: sorted(v["id"] for v in violations if v["impact"] == impact)
            for impact in IMPACTS
        },
        "violations": violations,
        # What axe could not decide by itself (text over an image, say): for a person to look at.
        "incomplete": [
            {
                "id": v["id"],
                "nodes": [
                    {"target": n["target"], "why": [c["message"] for c in n["any"] + n["all"]]}
                    for n in v["nodes"]
                ],
            }
            for v in response.get("incomplete", [])
        ],
    }
    AXE_OUT.mkdir(parents=True, exist_ok=True)
    (AXE_OUT / f"{name}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))
    page.screenshot(path=AXE_OUT / f"{name}.png")  # the state that was checked, to look at
    return record


def assert_accessible(page: Page, name: str) -> dict[str, Any]:
    """axe-core finds no serious or critical violation on the page (all are recorded).

    Contrast that axe leaves undecided fails too, unless the element holds only symbols (an
    arrow): axe does not judge a short text such as a count ("1" on a coloured badge), and a
    badge below 4.5:1 once slipped through that way."""
    record = axe_record(page, name)
    bad = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in record["violations"]
        if v["impact"] in FAILING
    ]
    bad += [
        f"color-contrast (undecided): {n['target']} {n['why']}"
        for v in record["incomplete"]
        if v["id"] == "color-contrast"
        for n in v["nodes"]
        if not any("only non-text characters" in why for why in n["why"])
    ]
    assert not bad, f"{name}: " + "; ".join(bad)
    return record


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


BAD_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"></head><body>'
    '<img src="/media/bad.svg"><button type="button"></button>'
    '<p style="color:#777;background:#888">hard to read</p>'
    '<input type="text"></body></html>'
)
AD_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="800" viewBox="0 0 640 800">'
    '<rect width="640" height="800" fill="#0a5"/>'
    '<text x="320" y="380" font-size="72" text-anchor="middle" fill="#fff">Stadtfest</text>'
    "</svg>"
)
HTML_AD = (
    '<!doctype html><html lang="de"><head><title>Stadtfest</title></head>'
    '<body style="background:#036;color:#fff"><h1>Stadtfest am Samstag</h1></body></html>'
)


async def _bad_page(request: web.Request) -> web.Response:
    return web.Response(text=BAD_PAGE, content_type="text/html")


async def _ad(request: web.Request) -> web.Response:
    return web.Response(text=AD_SVG, content_type="image/svg+xml")


async def _html_ad(request: web.Request) -> web.Response:
    return web.Response(text=HTML_AD, content_type="text/html")


@pytest.fixture(scope="module")
def display() -> Iterator[ServedDisplay]:
    s = ServedDisplay(
        [
            web.get("/media/bad.html", _bad_page),
            web.get("/media/fest.svg", _ad),
            web.get("/media/fest.html", _html_ad),
        ]
    )
    try:
        yield s
    finally:
        s.close()


def display_page(browser: Browser, url: str, layout: str) -> Page:
    width, height = SIZES[layout]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-agent", "up")
    return page


# -- the checker fails on a page with known faults -----------------------------------------


def test_the_checker_fails_on_a_page_with_known_violations(
    browser: Browser, display: ServedDisplay
) -> None:
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{display.display.port}/media/bad.html")
    with pytest.raises(AssertionError) as failed:
        assert_accessible(page, "known-bad")
    for rule in ("image-alt", "button-name", "label", "color-contrast"):
        assert rule in str(failed.value)
    record = json.loads((AXE_OUT / "known-bad.json").read_text())
    assert "image-alt" in record["by_impact"]["critical"]
    assert "color-contrast" in record["by_impact"]["serious"]
    page.close()


# -- the passenger display ---------------------------------------------------------------------


def busy_display(display: ServedDisplay, languages: tuple[str, ...]) -> None:
    now = time.time()
    display.update(
        journey=journey(1, delay_s=240.0),
        messages=(
            PassengerMessage(
                id="m1", text_de="Gute Fahrt", text_en="Have a good trip", valid_to=now + 600
            ),
            PassengerMessage(  # German only: an English page shows it marked lang="de"
                id="m2",
                text_de="Haltestelle Shields St entfällt",
                priority=2,
                valid_to=now + 600,
            ),
        ),
        stop_requested=True,
        online=True,
        ad=None,
        diversion=None,
        languages=languages,
    )


@pytest.mark.parametrize("layout", ["landscape", "strip"])
@pytest.mark.parametrize("lang", ["de", "en"])
def test_the_passenger_display_has_no_serious_violation(
    browser: Browser, display: ServedDisplay, layout: str, lang: str
) -> None:
    busy_display(display, (lang,))
    page = display_page(browser, f"{display.url}/{layout}", layout)
    expect(page.locator("#next-stop")).to_have_text("Sheridan Street")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator("#announcements li")).to_have_count(2)
    assert_accessible(page, f"display-{layout}-{lang}")
    # What changes is read out by screen readers: the next stop, announcements, a request.
    for live in ("#next-stop", "#announcements"):
        expect(page.locator(live)).to_have_attribute("aria-live", "polite")
    expect(page.locator("#stop-requested")).to_have_attribute("role", "status")
    expect(page.get_by_role("heading", level=1)).to_have_count(1)
    # A German text on an English page says so.
    german = page.locator('#announcements li[data-id="m2"]')
    if lang == "en":
        expect(german).to_have_attribute("lang", "de")
    else:
        expect(german).not_to_have_attribute("lang", re.compile(".*"))
    # With an ad (an image, then an HTML ad in its frame) and a diversion in force.
    display.update(ad=AdSlot("fest", "/media/fest.svg"), diversion="Umleitung über Spence St")
    expect(page.locator("#diversion")).to_be_visible()
    if layout == "landscape":
        expect(page.locator("#ad img")).to_be_visible()
    assert_accessible(page, f"display-{layout}-{lang}-ad-diversion")
    if layout == "landscape":
        display.update(ad=AdSlot("fest-html", "/media/fest.html"))
        expect(page.locator("#ad iframe")).to_have_attribute(
            "title", "Anzeige" if lang == "de" else "Advertisement"
        )
        assert_accessible(page, f"display-{layout}-{lang}-html-ad")
    page.close()


def test_the_empty_display_before_a_trip_has_no_serious_violation(
    browser: Browser, display: ServedDisplay
) -> None:
    display.reset()
    page = display_page(browser, f"{display.url}/landscape", "landscape")
    assert_accessible(page, "display-landscape-empty")
    page.close()


# -- the portal --------------------------------------------------------------------------------


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ServedPortal]:
    s = ServedPortal(tmp_path / "portal.sqlite")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="de-DE"
    )
    context.set_default_timeout(WAIT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["de", "en"])
def test_the_portal_has_no_serious_violation_from_terms_to_feedback(
    phone: BrowserContext, portal: ServedPortal, lang: str
) -> None:
    page = phone.new_page()
    page.goto(f"{portal.url}/?lang={lang}")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    assert_accessible(page, f"portal-terms-{lang}")
    page.locator("#go").click()  # not ticked: the browser stops it
    page.goto(f"{portal.url}/status?lang={lang}")
    assert_accessible(page, f"portal-not-online-{lang}")
    page.goto(f"{portal.url}/?lang={lang}")
    page.locator("input[name=accept]").check()
    page.locator("#go").click()
    expect(page.locator("#state")).to_have_class(re.compile("ok"))
    expect(page.locator("#trip")).to_contain_text("Cairns Central")
    assert_accessible(page, f"portal-online-{lang}")
    page.goto(f"{portal.url}/feedback?lang={lang}")
    assert_accessible(page, f"portal-feedback-{lang}")
    page.locator("textarea").fill("x" * 3)
    page.locator("button[type=submit]").click()
    expect(page.locator("#thanks")).to_be_visible()
    assert_accessible(page, f"portal-thanks-{lang}")
    page.close()


# -- the driver terminal -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTerminal]:
    s = ServedTerminal(tmp_path_factory.mktemp("driver"))
    feed = read_feed(REPO / "data" / "gtfs" / "cairns_gtfs.zip")
    plan = plan_trip(feed, demo_trips(feed, 1)[0], date.today())
    stop = plan.stops[2]
    t = plan.arrival_t(2) - 60 + 240.0  # a minute before stop 2, four minutes late
    tracker = JourneyTracker(plan, now=t - 1)
    for k in range(3):
        p = plan.path.point_at(stop.dist_m - 300 + k * 8)
        tracker.update(t + k, p[0], p[1], speed=8.0, track=p[2])
    now = time.time()
    cmd = Command(
        id="c1",
        name="driver_message",
        t=now,
        expires=now + 3600,
        args={"text": "Bitte Leitstelle anrufen"},
    )
    s.call(lambda: s.terminal.apply_journey(tracker.state, plan, notice="Umleitung Spence St"))
    s.call(lambda: s.terminal.on_message_command(cmd))
    s.call(lambda: s.terminal.send_canned(CANNED[0].code))
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize("theme", ["day", "night"])
@pytest.mark.parametrize("lang", ["de", "en"])
def test_the_driver_terminal_has_no_serious_violation(
    browser: Browser, terminal: ServedTerminal, lang: str, theme: str
) -> None:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{terminal.origin}/driver?lang={lang}&theme={theme}")
    expect(page.locator("body")).to_have_attribute("data-agent", "live")
    expect(page.locator("#messages li")).to_have_count(1)
    expect(page.locator("#sent li")).to_have_count(1)
    expect(page.locator("html")).to_have_attribute("data-theme", theme)
    assert_accessible(page, f"driver-{lang}-{theme}")
    # A canned message armed for its second tap, the focus on it from a keyboard.
    button = page.locator("#canned button").nth(1)
    page.keyboard.press("Tab")  # from the keyboard: the focus shows (the terminal's own ring)
    expect(page.locator("#theme")).to_be_focused()
    outline = page.locator("#theme").evaluate(
        "b => [getComputedStyle(b).outlineStyle, getComputedStyle(b).outlineWidth]"
    )
    assert outline == ["solid", "4px"]
    button.click()
    expect(button).to_have_class(re.compile("armed"))
    assert_accessible(page, f"driver-{lang}-{theme}-armed")
    page.close()


# -- the driver terminal speaks German and English ---------------------------------------------

DRIVER_TEXTS = {
    "de": {
        "#next-label": "Nächster Halt",
        "#adherence-label": "verspätet",
        "#messages .ack": "Bestätigen",
        '#canned button[data-code="delay_traffic"]': "Verspätung: Verkehr",
        "#sent .what": "Verspätung: Verkehr",
        "#theme": "Nacht",
        "#diversion": "Umleitung: Umleitung Spence St",
        ".sos-label": "Notruf: 2 s halten",
    },
    "en": {
        "#next-label": "Next stop",
        "#adherence-label": "late",
        "#messages .ack": "Acknowledge",
        '#canned button[data-code="delay_traffic"]': "Delay: traffic",
        "#sent .what": "Delay: traffic",
        "#theme": "Night",
        "#diversion": "Diversion: Umleitung Spence St",
        ".sos-label": "Hold 2 s: emergency",
    },
}


def expect_driver_language(page: Page, lang: str) -> None:
    expect(page.locator("html")).to_have_attribute("lang", lang)
    for selector, text in DRIVER_TEXTS[lang].items():
        expect(page.locator(selector)).to_have_text(text)
    expect(page).to_have_title("Fahrerterminal" if lang == "de" else "Driver terminal")


def test_the_driver_terminal_speaks_german_first_and_english_like_the_displays(
    browser: Browser, terminal: ServedTerminal
) -> None:
    pinned = {}
    for lang in ("de", "en"):  # the kiosk URL's ?lang= (as the displays' pages)
        pinned[lang] = browser.new_page(viewport=VIEWPORT)
        pinned[lang].set_default_timeout(WAIT_MS)
        pinned[lang].goto(f"{terminal.origin}/driver?lang={lang}")
        expect_driver_language(pinned[lang], lang)
    # Without ?lang=: the displays' language (display.language), set live by central.
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{terminal.origin}/driver")
    expect_driver_language(page, "de")
    page.evaluate("window.loadedOnce = true")
    try:
        terminal.call(lambda: terminal.terminal.set_language("en"))
        expect_driver_language(page, "en")
        terminal.call(lambda: terminal.terminal.set_language("de,en"))  # German first
        expect_driver_language(page, "de")
        for lang, p in pinned.items():  # their URL's ?lang= wins
            expect_driver_language(p, lang)
        assert page.evaluate("window.loadedOnce === true")  # switched without a reload
    finally:
        terminal.call(lambda: terminal.terminal.set_language("de"))
    for p in (page, *pinned.values()):
        p.close()


def test_the_terminal_takes_the_display_language_and_refuses_one_it_cannot_speak(
    tmp_path: Path,
) -> None:
    from onboard.link.outbox import Outbox

    outbox = Outbox(tmp_path / "agent.sqlite")
    try:
        terminal = DriverTerminal(outbox, lambda *a, **k: 0, language="en,de")
        assert terminal.state.languages == ("en", "de")
        with pytest.raises(ValueError, match="display languages"):
            terminal.set_language("fr")
        assert terminal.state.languages == ("en", "de")
        assert all(c.label and c.label_de and c.label != c.label_de for c in CANNED)
        # display.language set by central reaches the terminal too, live (onboard/remote_config).
        config = AgentConfig(display=DisplaySection(language="de,en"))
        parts = SimpleNamespace(display=None, driver=terminal)
        LIVE["display.language"](parts, config)  # type: ignore[arg-type]
        assert terminal.state.languages == ("de", "en")
    finally:
        outbox.close()


def test_the_portal_marks_german_text_on_an_english_page_and_ties_errors_to_the_field() -> None:
    from onboard.portal.content import Announcement, PortalContent
    from onboard.portal.pages import bus_box, feedback_page

    content = PortalContent(
        announcements=(Announcement("Nur auf Deutsch"), Announcement("Beides", "Both"))
    )
    assert '<li lang="de">Nur auf Deutsch</li><li>Both</li>' in bus_box("en", content)
    assert "<li>Nur auf Deutsch</li><li>Beides</li>" in bus_box("de", content)
    form = feedback_page("en", "token", error="empty")
    assert 'id="error"' in form and 'aria-invalid="true" aria-describedby="error"' in form
    assert "aria-invalid" not in feedback_page("en", "token")
