"""The headless demo shows the whole mission (issue 18): the published timetable with its
route shapes for the map, a playlist of generated ads on every bus (plays stored at central),
a passenger message on the displays, a diversion that starts a minute in, and bus-01's
passenger display, driver terminal and Wi-Fi portal answering on 127.0.0.1.

`busfleet demo --headless --buses 5 --seconds 120` runs as a subprocess, as a newcomer starts
it; while it runs, the test opens the URLs it printed and asks its central for the shapes the
dashboard's map draws. Its last line is the JSON of figures. About 2.5 minutes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from central import client
from central.config import CentralConfig
from protocols.requests import Listing

SECONDS = 120  # the diversion starts 60 s after the demo staged it: well inside the run
URL_LINE = re.compile(r"^\[demo\] bus-01: (.+?) (http://127\.0\.0\.1:\d+/\S*)$")
BROKER_LINE = re.compile(r"^\[demo\] broker: (\w+) on ([\d.]+):(\d+)$")
WAIT_S = 90.0  # for the demo to print its URLs (a cold central, the import) and serve them


def fetch_status(url: str, deadline: float) -> int:
    """The page's HTTP status once its server answers (the agent binds its sites with
    backoff after start); the last error's status, or 0, if none answered by `deadline`."""
    status = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read()
                if response.status == 200 and body:
                    return 200
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            pass
        time.sleep(1)
    return status


async def shapes(kind: str, host: str, port: int, db: Path) -> list[dict[str, object]]:
    """The route shapes central answers the dashboard's map with."""
    config = dataclasses.replace(
        CentralConfig(),
        db=str(db),
        mqtt_host=host,
        mqtt_port=port,
        mqtt_protocol=5 if kind == "mosquitto" else 4,
    )
    async with client.connect(config, "demo-test", presence_wait_s=30) as central:
        reply = await central.ask(client.envelope(Listing(what="shapes")))
    assert reply.ok, reply.error
    return [dict(row) for row in reply.tables.get("shapes", [])]


def test_the_headless_demo_shows_ads_message_diversion_and_the_pages_of_bus_01(
    tmp_path: Path,
) -> None:
    demo = ["demo", "--headless", "--buses", "5", "--seconds", str(SECONDS)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "busfleet.cli", *demo, "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + WAIT_S
        urls: dict[str, str] = {}
        while len(urls) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            urls = {m[1]: m[2] for line in list(lines) if (m := URL_LINE.match(line.strip()))}
        log = "".join(lines)[-3000:]
        assert set(urls) == {"passenger display", "driver terminal", "Wi-Fi portal"}, log
        # Opened while the demo runs, as a newcomer would from the printed lines.
        statuses = {name: fetch_status(url, deadline) for name, url in urls.items()}
        assert statuses == dict.fromkeys(urls, 200), (statuses, log)
        broker = next(m for line in lines if (m := BROKER_LINE.match(line.strip())))
        routes = asyncio.run(
            shapes(broker[1], broker[2], int(broker[3]), tmp_path / "central.sqlite")
        )
        proc.wait(timeout=SECONDS + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    log = "".join(lines)[-4000:]
    stdout = (proc.stdout.read() if proc.stdout else "").strip()
    assert stdout, log
    figures = json.loads(stdout.splitlines()[-1])
    assert figures["errors"] == 0, log
    assert proc.returncode == 0, log
    # The map has routes to draw: central imported the feed with its shapes.
    assert len(routes) >= 5, routes[:3]
    assert all(str(r["points"]).count(";") >= 1 for r in routes)
    # The existing figures are still there.
    assert figures["buses_seen"] == 5, log
    assert figures["timetable_version"] == 1, log
    # The mission: plays of the generated ads stored at central, the passenger message on the
    # displays, the diversion of bus-01's route shown on its display, the printed URLs.
    assert figures["plays_stored"] > 0, log
    assert figures["messages_shown"] > 0, log
    assert figures["diversions_active"] > 0, log
    assert figures["urls"] == {
        "display": urls["passenger display"],
        "driver": urls["driver terminal"],
        "portal": urls["Wi-Fi portal"],
    }
    ads = sorted(p.name for p in (tmp_path / "ads").iterdir())
    assert ads == ["esplanade.png", "night-market.svg", "reef-trips.svg"]
