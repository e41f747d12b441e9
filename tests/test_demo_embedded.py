"""The demo on the embedded broker (amqtt), as it runs where mosquitto is not installed.

`busfleet demo --headless --broker embedded`: the broker in a child process, `central serve`
and two simulated buses as processes, for a short run; its last line on stdout is the JSON
of figures, read from central's database, central's published counters and its retained
fleet entries. The buses have no feed of their own: they run the timetable central published.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SECONDS = 12  # the buses report once a second: a dozen positions each, enough to count


def test_the_headless_demo_on_the_embedded_broker_stores_positions_of_both_buses(
    tmp_path: Path,
) -> None:
    demo = ["demo", "--headless", "--broker", "embedded", "--buses", "2"]
    run = ["--seconds", str(SECONDS), "--workdir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "busfleet.cli", *demo, *run],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log = done.stderr[-3000:]
    assert "broker: embedded" in done.stderr, log
    assert done.stdout.strip(), log
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["errors"] == 0, log  # no process died, central rejected nothing
    assert figures["buses_seen"] == 2, log
    assert figures["positions_stored"] >= 2, log
    assert figures["timetable_version"] == 1, log  # central imported and published the feed
    assert figures["buses_on_timetable"] == 2, log  # both buses downloaded it and run it
    assert "stops_passed" in figures, log
    assert done.returncode == 0, log
    assert (tmp_path / "broker" / "embedded-broker.log").exists()
    assert not (tmp_path / "broker" / "mosquitto.conf").exists()
    for bus in ("bus-01", "bus-02"):  # the package they downloaded from central's HTTP
        assert list((tmp_path / bus / "timetables").glob("*.bin")), bus
