"""`busfleet demo --headless` on mosquitto: the production timetable path, end to end.

Issue 14's `busfleet demo --headless --buses 5 --seconds 60`, as it stands (with a work
directory to look into; the default broker is mosquitto where it is installed, as here):
central imports the Cairns feed mapped onto today and publishes it; five simulated buses with
no feed of their own download it from central, drive trips that run now and serve stops. The
last line's figures say so: every bus on the published version, stops passed, and delays of
seconds to minutes (a bus on a 2014 trip would be hours off).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from busfleet.demo import APPROACH_M, trips_for
from busfleet.simbus import DEFAULT_GTFS
from hw_sim.feed_today import MIN_AHEAD_M, scheduled_dist_at, service_day, write_feed_today
from protocols.gtfs.feed import read_feed

BUSES = 5
SECONDS = 60  # each bus starts at most 120 m before a stop: it serves it within the minute


def test_the_headless_demo_runs_every_bus_on_central_timetable_within_minutes_of_schedule(
    tmp_path: Path,
) -> None:
    demo = ["demo", "--headless", "--buses", str(BUSES), "--seconds", str(SECONDS)]
    run = ["--workdir", str(tmp_path)]
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


def test_each_demo_bus_starts_shortly_before_a_stop_and_minutes_at_most_early(
    tmp_path: Path,
) -> None:
    """Where the demo starts its buses, over an hour of start times: a minute's run sees
    every bus serve a stop, and none runs more than five minutes ahead of its schedule."""
    now = time.time()
    write_feed_today(DEFAULT_GTFS, tmp_path / "today.zip", now)
    feed = read_feed(tmp_path / "today.zip")
    for start in range(int(now), int(now) + 3600, 300):
        chosen = trips_for(feed, BUSES, start, lambda _: None)
        assert len(chosen) == BUSES
        _, origin = service_day(start, feed.timezone)
        for trip in chosen:
            _, stops = feed.trip_path(trip.trip_id)
            ahead = [d - trip.dist_m for _, d in stops if d - trip.dist_m >= MIN_AHEAD_M]
            assert ahead and ahead[0] <= APPROACH_M, (start, trip)
            on_time_in_5_min = scheduled_dist_at(feed, trip.trip_id, start - origin + 300)
            assert trip.dist_m <= on_time_in_5_min, (start, trip)
