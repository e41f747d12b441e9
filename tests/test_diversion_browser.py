"""A diversion on the passenger display, in Debian's Chromium (Playwright, headless).

The display gets what the agent gives it while a simulated bus drives a Cairns trip with a
diversion (`tests/diversion_helpers.py`): during the window the notice and the skipped stops
(marked, never as the next stop), after it the plain timetable again.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import async_playwright, expect

from onboard.display import Display
from protocols.gtfs.feed import read_feed
from tests.diversion_helpers import GTFS, NOTICE_DE, ride

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15_000  # generous for a loaded machine; never a timing assertion
LATER_STOPS = 4  # the landscape page lists this many stops after the next one


async def test_the_display_shows_the_diversion_notice_and_skipped_stops_then_the_timetable(
    output_dir: Path,
) -> None:
    run = ride(read_feed(GTFS))
    end = run.diversion.valid_to
    assert end is not None
    during = next(
        s
        for s in run.steps
        if s.view is not None
        and s.notice
        and any(n.skipped for n in s.view.next_stops[1 : 1 + LATER_STOPS])
    )
    after = next(s for s in run.steps if s.t > end + 1.0 and s.view and s.view.next_stops)
    assert during.view is not None and after.view is not None
    skipped = [n for n in during.view.next_stops[1 : 1 + LATER_STOPS] if n.skipped]

    display = Display(port=0, tick_s=0.2)
    display.update(journey=during.view, diversion=during.notice)
    async with display, async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1920, "height": 1080})
            await page.goto(f"http://127.0.0.1:{display.port}/display/landscape")
            banner = page.locator("#diversion")
            await expect(banner).to_be_visible(timeout=WAIT_MS)
            await expect(banner).to_contain_text("Umleitung")
            await expect(banner).to_contain_text(NOTICE_DE)
            next_stop = page.locator("#next-stop")
            await expect(next_stop).to_have_text(during.view.next_stops[0].name)
            assert await next_stop.get_attribute("data-stop-id") not in run.skipped
            marked = page.locator("#stops li.skipped")
            await expect(marked).to_have_count(len(skipped))
            for i, stop in enumerate(skipped):
                await expect(marked.nth(i)).to_have_attribute("data-stop-id", stop.stop_id)
                await expect(marked.nth(i).locator(".name")).to_have_text(stop.name)
                await expect(marked.nth(i).locator(".minutes")).to_have_text("entfällt")
            await page.screenshot(path=str(output_dir / "1-diverted.png"))

            display.update(journey=after.view, diversion=after.notice)  # the window is over
            await expect(banner).to_be_hidden(timeout=WAIT_MS)
            await expect(page.locator("#stops li.skipped")).to_have_count(0)
            await expect(next_stop).to_have_text(after.view.next_stops[0].name)
            await page.screenshot(path=str(output_dir / "2-timetable.png"))
        finally:
            await browser.close()
