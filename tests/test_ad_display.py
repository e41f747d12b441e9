"""The scheduled ad in the display's slot, in a real browser (Debian's Chromium, Playwright).

The agent's own glue is used: its ads runtime plays from the verified cache and puts the
item into the passenger display's ad slot; the page loads the file from the display's own
origin (the agent mounts the cache there), under the display's CSP. The player's clock is
simulated, so "when its time comes" is a step of the clock, not a wait: at 07:59:40 the
breakfast campaign shows its ad; its window closes at 08:00, and the next play is the
all-day ad."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp
from playwright.async_api import Page, async_playwright, expect

from busfleet.broker.launch import free_port
from onboard.agent import Agent
from onboard.config import parse_config
from protocols import codec
from protocols.ads.playlist import Playlist, Schedule, Window
from protocols.schemas import DesiredState
from tests.ads_helpers import item_for, png

TZ = dt.timezone(dt.timedelta(hours=10))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 10_000  # generous for a loaded machine; never a timing assertion


def make_agent(tmp_path: Path) -> Agent:
    config = parse_config(
        f'[bus]\nid = "bus-a"\ndata_dir = "{tmp_path / "bus"}"\n'
        f"[mqtt]\nport = {free_port()}\ninsecure_dev_broker = true\n"
        '[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
        "[display]\nport = 0\n"
    )
    return Agent(config)


async def slot_shows(page: Page, item_id: str, colour: tuple[int, int, int]) -> None:
    """The slot holds this item's image, decoded by the browser, in its colour."""
    img = page.locator(f'#ad[data-item-id="{item_id}"] img')
    await expect(img).to_be_visible(timeout=WAIT_MS)
    await page.wait_for_function(
        "() => { const i = document.querySelector('#ad img');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=WAIT_MS,
    )
    pixel = await page.evaluate(
        """() => { const i = document.querySelector('#ad img');
        const c = document.createElement('canvas'); c.width = i.naturalWidth;
        c.height = i.naturalHeight; const x = c.getContext('2d'); x.drawImage(i, 0, 0);
        return Array.from(x.getImageData(1, 1, 1, 1).data.slice(0, 3)); }"""
    )
    assert tuple(pixel) == colour


async def test_the_scheduled_ad_is_shown_in_the_slot_and_the_next_when_its_time_comes(
    tmp_path: Path, output_dir: Path
) -> None:
    red_png, green_png = png(640, 360, (220, 20, 20)), png(640, 360, (20, 160, 60))
    red, green = item_for("breakfast-red", red_png, 30), item_for("allday-green", green_png, 30)
    playlist = Playlist(
        id="city",
        timezone="Australia/Brisbane",
        items=[red, green],
        schedules=[
            Schedule(id="breakfast", items=[red.id], priority=5,
                     windows=[Window(start="07:00", end="08:00")]),
            Schedule(id="all-day", items=[green.id]),
        ],
    )  # fmt: skip
    agent = make_agent(tmp_path)
    ads, display = agent.ads, agent.display
    assert ads is not None and display is not None
    for item, data in ((red, red_png), (green, green_png)):  # as a download would leave them
        ads.cache.partial(item.media).write_bytes(data)
        ads.cache.adopt(item.media, item.mime)
    agent.on_desired(
        codec.encode(DesiredState(bus="bus-a", version=1, playlist="city", ads=playlist))
    )
    async with aiohttp.ClientSession() as session:  # everything is cached: verify and switch
        assert await ads.sync_once(session)

    t0 = dt.datetime(2025, 6, 2, 7, 59, 40, tzinfo=TZ).timestamp()
    async with display, async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1920, "height": 1080})
            await page.goto(f"http://127.0.0.1:{display.port}/display/landscape")
            next_at = ads.player.step(t0)  # 07:59:40: breakfast
            await slot_shows(page, red.id, (220, 20, 20))
            await page.screenshot(path=str(output_dir / "1-breakfast.png"))
            ads.player.step(next_at)  # 08:00:10: breakfast is over
            await slot_shows(page, green.id, (20, 160, 60))
            await page.screenshot(path=str(output_dir / "2-all-day.png"))
        finally:
            await browser.close()
    plays = [
        body
        for (body,) in agent.outbox.db.execute("SELECT body FROM outbox ORDER BY seq").fetchall()
    ]
    agent.outbox.close()
    assert len(plays) == 1 and b'"breakfast-red"' in plays[0]  # the finished play is proven
