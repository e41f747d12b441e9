"""bench/timetable.py runs (small) and prints its figures as one JSON line: the benchmark's
code path is the real one (central's HTTP, the bus's TimetableRuntime), so it must keep working;
its times are the benchmark's business, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

KEYS = {
    "stop_times",
    "trips",
    "gtfs_zip_bytes",
    "package_bytes",
    "package_vs_zip",
    "build_package_s",
    "package_read_s",
    "download_s",
    "download_and_switch_s",
    "journey_switch_s",
    "baseline_read_gtfs_zip_s",
}


def test_the_timetable_bench_measures_both_feeds_and_ends_with_one_json_line() -> None:
    argv = [sys.executable, str(REPO / "bench" / "timetable.py"), "--quick", "--stop-times", "4000"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures) == {"cairns", "synthetic", "peak_rss_mb"}
    for name in ("cairns", "synthetic"):
        assert set(figures[name]) == KEYS, name
        assert figures[name]["package_bytes"] > 0
    assert figures["synthetic"]["stop_times"] == 4000
    assert figures["cairns"]["stop_times"] > 30_000  # the whole Cairns feed reached the bus
    assert "baseline read_feed of the GTFS zip" in done.stderr


def test_the_timetable_bench_refuses_an_unknown_feed() -> None:
    argv = [sys.executable, str(REPO / "bench" / "timetable.py"), "--feeds", "paris"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--feeds takes cairns and/or synthetic" in done.stderr
