"""bench/reports_month.py runs (tiny: 2 buses, 1 day) and prints its figures as one JSON line:
every report the dashboard and the CLI offer is timed there, on data the bench generates, so
each must keep answering on it: a report that silently returns nothing (a window that misses
the data, a filter that drops every row) fails here. Times are the benchmark's business,
never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

REPORTS = {
    "bus_detail",
    *(f"{what}_{days}d" for what in ("punctuality", "plays", "feedback") for days in (1, 7, 31)),
    "plays_cli_month",
    "plays_cli_month_item",
    "driver_log_1d",
    "driver_log_month",
    "driver_log_bus_month",
    "commands_all",
    "commands_bus",
    "gtfs_rt_vehicle_positions",
    "gtfs_rt_trip_updates",
    *(f"list_{what}" for what in ("routes", "trips", "blocks", "stops", "shapes", "messages")),
}
# The Cairns feed the bench imports has no block_id on any trip: the blocks list is empty there.
EMPTY_ON_THE_CAIRNS_FEED = {"list_blocks"}


def run_bench(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, str(REPO / "bench" / "reports_month.py"), "--buses", "2", "--days", "1",
        "--runs", "1", *extra,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def test_the_month_bench_times_every_report_and_each_answers_on_its_data(tmp_path: Path) -> None:
    db = tmp_path / "central.sqlite"
    done = run_bench(tmp_path, "--db", str(db))
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures["reports"]) == REPORTS
    assert set(figures["rows"]) == REPORTS
    empty = {name for name, rows in figures["rows"].items() if rows == 0}
    assert empty == EMPTY_ON_THE_CAIRNS_FEED
    assert figures["telemetry_rows"] == 2 * 19 * 360  # 05:00-24:00, every 10 s, two buses
    assert figures["fill"]["event_rows"] > figures["departures"] > 0
    assert set(figures["baseline"]) == {"count_telemetry_s", "count_departures_s"}
    assert "baseline full COUNT(*) of telemetry" in done.stderr

    again = run_bench(tmp_path, "--reuse", str(db))  # the reports alone, on the same data
    assert again.returncode == 0, again.stderr[-3000:]
    reused = json.loads(again.stdout.strip().splitlines()[-1])
    assert "fill" not in reused
    assert reused["rows"] == figures["rows"]


def test_the_month_bench_refuses_a_backend_it_cannot_open_yet(tmp_path: Path) -> None:
    done = run_bench(tmp_path, "--db", "postgresql://bench@localhost/central")
    assert done.returncode != 0
    assert "only SQLite" in done.stderr
