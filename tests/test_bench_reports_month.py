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


# Parts of central not on PostgreSQL yet (backend.py): the GTFS-RT feeds read the diversions.
NOT_PORTED_YET = {"gtfs_rt_vehicle_positions", "gtfs_rt_trip_updates"}


def test_the_month_bench_times_every_report_and_each_answers_on_its_data(tmp_path: Path) -> None:
    db = tmp_path / "central.sqlite"
    done = run_bench(tmp_path, "--db", str(db), "--backend", "both")
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    lite, pg = figures["backends"]["sqlite"], figures["backends"]["postgresql"]
    assert set(lite["reports"]) == set(lite["rows"]) == REPORTS
    assert set(pg["reports"]) == set(pg["rows"]) == REPORTS - set(pg.get("not_ported", {}))
    assert set(pg.get("not_ported", {})) <= NOT_PORTED_YET
    empty = {name for name, rows in lite["rows"].items() if rows == 0}
    assert empty == EMPTY_ON_THE_CAIRNS_FEED
    assert figures["same_rows"] is True
    assert {name: lite["rows"][name] for name in pg["rows"]} == pg["rows"]
    for backend in (lite, pg):
        assert backend["telemetry_rows"] == 2 * 19 * 360  # 05:00-24:00, every 10 s, two buses
        assert figures["fill"]["event_rows"] > backend["departures"] > 0
        assert set(backend["baseline"]) == {"count_telemetry_s", "count_departures_s"}
    assert figures["copy"]["rows"] > figures["fill"]["event_rows"]
    assert "baseline full COUNT(*) of telemetry" in done.stderr

    again = run_bench(tmp_path, "--reuse", str(db))  # the reports alone, on the same data
    assert again.returncode == 0, again.stderr[-3000:]
    reused = json.loads(again.stdout.strip().splitlines()[-1])
    assert "fill" not in reused
    assert reused["backends"]["sqlite"]["rows"] == lite["rows"]


def test_the_month_bench_fills_sqlite_and_says_where_a_postgresql_database_goes(
    tmp_path: Path,
) -> None:
    done = run_bench(tmp_path, "--db", "postgresql://bench@localhost/central")
    assert done.returncode != 0
    assert "--db is the SQLite file" in done.stderr and "--pg-url" in done.stderr
