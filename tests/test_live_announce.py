"""Live announcements from city hall (issue 17), end to end: real mosquitto, a real `busfleet
central serve`, three real agents (`busfleet agent` child processes, each with its passenger
display on a free port), the dispatcher's real command line (`busfleet central announce`),
and Debian's Chromium on one bus's display page.

A group names two of the three buses; the announcement goes to the group. The two say it
(their `live_announcement` event is recorded when its playback begins: the Speaker's
`on_start`) and show it at that moment (the display's state and page); the third does
neither. Central's command rows say delivered for the two. An announcement for a bus that is
away longer than its ttl is reported expired, and the bus, when it comes back, never says it.
"""

from __future__ import annotations

import array
import json
import subprocess
import sys
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from busfleet.broker.launch import Broker, free_port, run_mosquitto
from onboard.link.outbox import Outbox
from protocols import codec
from protocols.schemas import Event
from tests.fleet_helpers import Procs, rows, wait_central_online, wait_for
from tests.test_accessibility import assert_accessible

REPO = Path(__file__).resolve().parent.parent
BUSES = ("bus-la1", "bus-la2", "bus-la3")  # names of this file only: tests run in parallel
GROUP = "la-depot"  # the first two
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
# Hostile text from the network: the page must show it as text, never as HTML.
HOSTILE = 'Umleitung <img src=x onerror="document.title=1"> & <b>Ende</b>'
ENGLISH = "Diversion: please change at Lake Street"


class City:
    """The broker, central and the agents of this module, with each bus's display port."""

    def __init__(self, workdir: Path, broker: Broker) -> None:
        self.workdir = workdir
        self.broker = broker
        self.procs = Procs(workdir, broker.port)
        self.ports = {bus: free_port() for bus in BUSES}
        self.agents: dict[str, subprocess.Popen[bytes]] = {}

    def conn(self) -> list[str]:
        db = str(self.workdir / "central.sqlite")
        return ["--db", db, "--mqtt-host", self.broker.host, "--mqtt-port", str(self.broker.port)]

    def start_agent(self, bus: str) -> None:
        config = self.workdir / f"{bus}.toml"
        config.write_text(
            f'[bus]\nid = "{bus}"\ndata_dir = "{self.workdir / bus}"\n'
            f"[mqtt]\nport = {self.broker.port}\nbackoff_max_s = 1.0\ninsecure_dev_broker = true\n"
            '[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
            f'[display]\nhost = "127.0.0.1"\nport = {self.ports[bus]}\nlanguage = "de,en"\n'
            "[driver]\nenabled = false\n[ads]\nenabled = false\n"
            f'[audio]\noutput = "file"\nout_dir = "{self.workdir / bus / "audio"}"\n'
        )
        self.agents[bus] = self.procs.start(bus, "agent", "--config", str(config))

    def stop_agent(self, bus: str) -> None:
        proc = self.agents.pop(bus)
        proc.terminate()
        proc.wait(timeout=30)

    def cli(self, *argv: str) -> list[str]:
        """A dispatcher's command (its own process); its stdout lines."""
        done = subprocess.run(
            [sys.executable, "-m", "busfleet.cli", "central", *argv, *self.conn()],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def display_state(self, bus: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.ports[bus]}/display/state.json"
        with urllib.request.urlopen(url, timeout=10) as response:
            state: dict[str, Any] = json.loads(response.read())["state"]  # {version, state}
        return state

    def display_up(self, bus: str) -> bool:
        try:
            self.display_state(bus)
        except OSError:
            return False
        return True

    def central_rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return rows(self.workdir / "central.sqlite", sql, *params)

    def connected(self, bus: str) -> bool:
        return bool(self.central_rows("SELECT 1 FROM reported WHERE bus = ?", bus))

    def spoken_at_central(self, announcement: str) -> set[str]:
        """The buses whose `live_announcement` event for `announcement` central stored."""
        found = self.central_rows("SELECT bus, data FROM events WHERE kind = 'live_announcement'")
        return {bus for bus, data in found if codec.decode_json(data).get("id") == announcement}

    def bus_events(self, bus: str) -> list[Event]:
        """Every event in the bus's own outbox (sent or not)."""
        box = Outbox(self.workdir / bus / "agent.sqlite")
        try:
            bodies = box.db.execute("SELECT body FROM outbox WHERE kind != 'telemetry'")
            return [codec.decode(Event, bytes(body)) for (body,) in bodies]
        finally:
            box.close()


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    workdir = tmp_path_factory.mktemp("live-announce")
    with run_mosquitto(workdir / "mq") as broker:
        city = City(workdir, broker)
        try:
            city.procs.central()
            for bus in BUSES:
                city.start_agent(bus)
            wait_central_online(broker)
            for bus in BUSES:
                wait_for(lambda bus=bus: city.connected(bus), 60, f"{bus} connected")
                wait_for(lambda bus=bus: city.display_up(bus), 60, f"{bus}'s display")
            city.cli("group", "set", GROUP, BUSES[0], BUSES[1])
            yield city
        finally:
            city.procs.close()


def spoken(city: City, bus: str) -> list[Path]:
    """The live announcements the bus's file output wrote (one WAV per announcement)."""
    return sorted((city.workdir / bus / "audio").glob("*-live.wav"))


def speech_seconds(path: Path) -> float:
    """How long the WAV is not near silence (16-bit mono: 10 ms windows above a floor)."""
    with wave.open(str(path)) as w:
        assert (w.getsampwidth(), w.getnchannels()) == (2, 1)
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    samples = array.array("h", frames)
    window = rate // 100
    loud = sum(
        1
        for i in range(0, len(samples) - window, window)
        if max(abs(s) for s in samples[i : i + window]) > 1000
    )
    return loud / 100


def announce(city: City, *argv: str) -> dict[str, Any]:
    """`busfleet central announce ...`; its last line, the JSON summary."""
    lines = city.cli("announce", *argv)
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def test_a_live_announcement_reaches_two_targeted_buses_and_not_a_third_spoken_and_shown(
    city: City, output_dir: Path
) -> None:
    first, second, third = BUSES
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.set_default_timeout(30_000)
            page.goto(f"http://127.0.0.1:{city.ports[first]}/display/landscape?lang=de")
            expect(page.locator("body")).to_have_attribute("data-agent", "up")
            expect(page.locator("#live")).to_be_hidden()
            strip = browser.new_page(viewport={"width": 1920, "height": 360})
            strip.set_default_timeout(30_000)
            strip.goto(f"http://127.0.0.1:{city.ports[second]}/display/strip")
            expect(strip.locator("body")).to_have_attribute("data-agent", "up")

            summary = announce(
                city, "--to", f"group:{GROUP}", "--de", HOSTILE, "--en", ENGLISH, "--wait", "60"
            )

            # Shown on the page, at once, as text: no element made of it.
            expect(page.locator("#live")).to_be_visible()
            expect(page.locator("#live-text")).to_have_text(HOSTILE)
            expect(page.locator("#live-text-en")).to_be_hidden()  # this page: ?lang=de
            assert page.locator("#live img, #live b").count() == 0
            assert page.title() != "1"
            page.screenshot(path=output_dir / "live-banner.png")
            # The second bus's strip, in its display's languages (de,en): both at once.
            expect(strip.locator("#live-text")).to_have_text(HOSTILE)
            expect(strip.locator("#live-text-en")).to_have_text(ENGLISH)
            expect(strip.locator("#live-text-en")).to_be_visible()
            strip.screenshot(path=output_dir / "live-strip.png")
            # axe-core with the banner up: no serious or critical violation on either page.
            assert_accessible(page, "display-landscape-live")
            assert_accessible(strip, "display-strip-live")
        finally:
            browser.close()

    ann = summary["announcement"]
    assert summary["to"] == [first, second]
    assert summary["status"] == {first: "delivered", second: "delivered"}
    # Central's command rows: one per targeted bus, answered ok (delivered); none for the third.
    commands = city.central_rows(
        "SELECT bus, status FROM commands WHERE name = 'announce' AND id LIKE ?", f"{ann}-%"
    )
    assert sorted(commands) == [(first, "ok"), (second, "ok")]
    status = [json.loads(line) for line in city.cli("announcement", ann)]
    assert [(r["bus"], r["status"]) for r in status] == [
        (first, "delivered"),
        (second, "delivered"),
    ]

    for bus in (first, second):
        live = city.display_state(bus)["live"]
        assert live is not None, f"{bus} shows no live announcement"
        assert (live["id"], live["text_de"], live["text_en"]) == (ann, HOSTILE, ENGLISH)
        said = [e for e in city.bus_events(bus) if e.kind == "live_announcement"]
        assert [(e.data["id"], e.data["de"], e.data["en"]) for e in said] == [
            (ann, HOSTILE, ENGLISH)
        ]
    # Spoken: the file output's WAV of it on the two (speech: not silence), none on the third.
    for bus in (first, second):
        [wav] = wait_for(lambda bus=bus: spoken(city, bus), 60, f"{bus}'s WAV")
        assert speech_seconds(wav) > 2.0, f"{bus}: {wav.name} is silence or too short"
    assert spoken(city, third) == []
    # Its playback began (the event) on the two, and that reached central.
    wait_for(lambda: city.spoken_at_central(ann) == {first, second}, 60, "the two buses' events")

    # The third bus is up and reporting, and has neither said nor shown anything.
    assert city.connected(third)
    assert city.display_state(third)["live"] is None
    assert not [e for e in city.bus_events(third) if e.kind == "live_announcement"]


def test_an_announcement_for_a_bus_away_longer_than_its_ttl_is_expired_and_never_spoken(
    city: City,
) -> None:
    third = BUSES[2]
    city.stop_agent(third)
    summary = announce(
        city, "--to", f"bus:{third}", "--de", "Zu spät", "--ttl", "1", "--wait", "30"
    )
    ann = summary["announcement"]
    assert summary["to"] == [third]
    assert summary["status"] == {third: "expired"}
    [row] = [json.loads(line) for line in city.cli("announcement", ann)]
    assert (row["bus"], row["status"]) == (third, "expired")

    # The bus comes back; whatever the broker kept for it, it says and shows nothing late.
    city.start_agent(third)
    wait_for(lambda: city.display_up(third), 60, f"{third}'s display again")
    acks = lambda: [  # noqa: E731 -- read again on each poll
        e
        for e in city.bus_events(third)
        if e.kind == "cmd_ack" and str(e.data.get("id", "")).startswith(ann)
    ]
    # Its persistent session holds the command: the bus answers it expired.
    [ack] = wait_for(acks, 60, f"{third}'s answer to the late command")
    assert ack.data["result"] == "expired"
    assert city.display_state(third)["live"] is None
    assert not [e for e in city.bus_events(third) if e.kind == "live_announcement"]
    assert spoken(city, third) == []  # no WAV: never said
    assert [
        r[0] for r in city.central_rows("SELECT status FROM commands WHERE id LIKE ?", f"{ann}-%")
    ] == ["expired"]
