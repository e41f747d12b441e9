"""`busfleet demo --headless` on mosquitto: the production timetable path, end to end.

Central imports the Cairns feed mapped onto today and publishes it; three simulated buses
with no feed of their own download it from central, drive trips that run now and pass stops.
The last line's figures say so: every bus on the published version, stops passed, and delays
of seconds to minutes (a bus on a 2014 trip would be hours off), as issue 14 asks of
`busfleet demo --headless --buses 5 --seconds 60`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BUSES = 3
SECONDS = 60  # long enough for each bus to reach a stop or two (they start before one)


def test_the_headless_demo_runs_every_bus_on_central_timetable_within_minutes_of_schedule(
    tmp_path: Path,
) -> None:
    demo = ["demo", "--headless", "--broker", "mosquitto", "--buses", str(BUSES)]
    run = ["--seconds", str(SECONDS), "--workdir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "busfleet.cli", *demo, *run],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    log = done.stderr[-4000:]
    assert "broker: mosquitto" in done.stderr, log
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["errors"] == 0, log
    assert figures["buses_seen"] == BUSES, log
    assert figures["timetable_version"] == 1, log
    assert figures["buses_on_timetable"] == BUSES, log
    assert figures["stops_passed"] > 0, log
    assert figures["max_abs_delay_s"] is not None, log  # the buses track and report a delay
    assert figures["max_abs_delay_s"] < 600, log
    assert done.returncode == 0, log
    # Each bus runs the package it downloaded from central's HTTP server.
    for i in range(1, BUSES + 1):
        assert list((tmp_path / f"bus-{i:02d}" / "timetables").glob("*.bin")), i
