"""Importing GTFS into central: the real Cairns feed, feeds without shapes, broken feeds,
warnings, unsorted stop times, a large synthetic feed, and assignments checked against it."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from busfleet.broker.launch import Broker, free_port
from busfleet.cli import main
from central.assign import AssignmentError, check_assignment
from central.gtfs_import import GtfsInvalid, import_gtfs
from central.store.db import CentralStore
from protocols.errors import GtfsError
from protocols.gtfs.stop_times import StopTimeReader, Unsorted
from protocols.gtfs.table import Report, Table
from protocols.schemas import Assignment
from tests.fleet_helpers import central_config, central_running, cli_conn

REPO = Path(__file__).resolve().parent.parent
CAIRNS = REPO / "data" / "gtfs" / "cairns_gtfs.zip"


def cairns_rows(name: str) -> list[dict[str, str]]:
    """One file of the Cairns zip, read with the csv module alone."""
    with zipfile.ZipFile(CAIRNS) as zf:
        return list(csv.DictReader(io.StringIO(zf.read(name).decode("utf-8-sig"))))


def run_import(
    capsys: pytest.CaptureFixture[str], path: Path, db: Path
) -> tuple[int, dict[str, Any], str]:
    """`busfleet central import-gtfs`: exit status, its last line as JSON, and stderr."""
    status = main(["central", "import-gtfs", str(path), "--db", str(db)])
    out, err = capsys.readouterr()
    return status, json.loads(out.strip().splitlines()[-1]), err


def query(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


# -- a small hand-made feed -----------------------------------------------------------------

FEED = {
    "agency.txt": "agency_name,agency_url,agency_timezone\nBus,http://x,Australia/Brisbane\n",
    "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,"
    "start_date,end_date\nWK,1,1,1,1,1,0,0,20240101,20991231\n",
    "routes.txt": "route_id,route_short_name,route_long_name,route_type\n"
    "R1,1,Loop,3\nR2,2,Line,3\n",
    "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n"
    "A,Stop A,-16.90,145.70\nB,Stop B,-16.91,145.71\nC,Stop C,-16.92,145.72\n"
    "D,Stop D,-16.93,145.73\n",
    "trips.txt": "route_id,service_id,trip_id,direction_id,block_id\n"
    "R1,WK,T1,0,BL1\nR2,WK,T2,1,BL1\n",
    "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
    "T1,07:00:00,07:00:00,A,1\nT1,,,B,2\nT1,,,C,3\nT1,07:30:00,07:31:00,D,4\n"
    "T2,08:00:00,08:00:00,D,1\nT2,08:10:00,08:10:00,C,2\nT2,08:20:00,08:21:00,B,3\n"
    "T2,08:30:00,08:30:00,A,4\n",
}


def write_feed(folder: Path, **override: str | None) -> Path:
    """The small feed, with files replaced (a text) or left out (None)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {**FEED, **override}.items():
        if text is not None:
            (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "central.sqlite"


# -- Cairns ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cairns(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], Path]:
    """The Cairns zip imported once by the command line: status, last line (JSON), database."""
    db = tmp_path_factory.mktemp("cairns") / "central.sqlite"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["central", "import-gtfs", str(CAIRNS), "--db", str(db)])
    return status, json.loads(out.getvalue().strip().splitlines()[-1]), db


def test_the_cairns_feed_imports_with_every_route_stop_trip_and_shape(
    cairns: tuple[int, dict[str, Any], Path],
) -> None:
    status, summary, db = cairns
    assert status == 0
    assert summary["ok"] is True
    assert summary["routes"] == len(cairns_rows("routes.txt"))
    assert summary["stops"] == len(cairns_rows("stops.txt"))
    assert summary["trips"] == len(cairns_rows("trips.txt"))
    assert summary["stop_times"] == len(cairns_rows("stop_times.txt"))
    assert summary["shapes"] == len({r["shape_id"] for r in cairns_rows("shapes.txt")})
    assert summary["shape_points"] == len(cairns_rows("shapes.txt"))
    assert summary["services"] == len(
        {r["service_id"] for r in cairns_rows("calendar.txt") + cairns_rows("calendar_dates.txt")}
    )
    assert summary["errors"] == 0
    assert summary["warnings"] >= 1  # at least: its calendar ended in 2014
    assert query(db, "SELECT COUNT(*) FROM gtfs_stop_times")[0][0] == summary["stop_times"]


def test_cairns_stop_times_are_stored_in_seconds_as_the_file_says(
    cairns: tuple[int, dict[str, Any], Path],
) -> None:
    db = cairns[2]
    for raw in cairns_rows("stop_times.txt")[::997]:
        h, m, s = (int(x) for x in raw["arrival_time"].split(":"))
        stored = query(
            db,
            "SELECT stop_id, arrival_s FROM gtfs_stop_times"
            " WHERE trip_id = ? AND stop_sequence = ?",
            raw["trip_id"],
            int(raw["stop_sequence"]),
        )
        assert stored == [(raw["stop_id"], h * 3600 + m * 60 + s)]


def test_a_feed_without_shapes_imports_and_says_its_trips_run_stop_to_stop(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "noshapes"
    folder.mkdir()
    with zipfile.ZipFile(CAIRNS) as zf:
        for name in zf.namelist():
            if name != "shapes.txt":
                (folder / name).write_bytes(zf.read(name))
    status, summary, err = run_import(capsys, folder, db)
    assert status == 0
    assert (summary["trips"], summary["shapes"], summary["shape_points"]) == (1339, 0, 0)
    with_shape = sum(1 for r in cairns_rows("trips.txt") if r["shape_id"])
    stored = query(db, "SELECT COUNT(*) FROM gtfs_trips WHERE shape_id IS NOT NULL")[0][0]
    assert stored == with_shape
    assert "no shapes.txt" in err


# -- broken feeds ------------------------------------------------------------------------------


def test_a_broken_feed_is_refused_with_file_line_and_field_and_exit_status_2(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    lines = FEED["stop_times.txt"].splitlines()
    lines[2] = "T1,07:05:00,07:05:00,NOWHERE,2"  # line 3 of the file
    lines[6] = "T2,08:1O:00,08:10:00,C,2"  # line 7: a letter O in the time
    folder = write_feed(tmp_path / "bad", **{"stop_times.txt": "\n".join(lines) + "\n"})
    status, summary, err = run_import(capsys, folder, db)
    assert status == 2
    assert summary["ok"] is False and summary["errors"] == 2
    assert "stop_times.txt line 3, stop_id: unknown stop 'NOWHERE'" in err
    assert "stop_times.txt line 7, arrival_time" in err


def test_a_refused_feed_leaves_the_imported_timetable_in_place(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    assert run_import(capsys, write_feed(tmp_path / "good"), db)[0] == 0
    bad = write_feed(tmp_path / "bad", **{"trips.txt": FEED["trips.txt"] + "R9,WK,T3,0,\n"})
    status, _, err = run_import(capsys, bad, db)
    assert status == 2
    assert "trips.txt line 4, route_id: unknown route 'R9'" in err
    assert query(db, "SELECT trip_id FROM gtfs_trips ORDER BY trip_id") == [("T1",), ("T2",)]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"stops.txt": None}, "stops.txt: required file missing"),
        ({"calendar.txt": None}, "neither calendar.txt nor calendar_dates.txt"),
        ({"routes.txt": "route_id,route_short_name\nR1,1\n"}, "routes.txt line 1, route_type"),
        (
            {"calendar.txt": FEED["calendar.txt"].replace("20991231", "20991331")},
            "calendar.txt line 2, end_date: not a day of the calendar",
        ),
        (
            {"stops.txt": FEED["stops.txt"] + "A,Again,-16.9,145.7\n"},
            "stops.txt line 6, stop_id: duplicate 'A'",
        ),
        (
            {"stop_times.txt": FEED["stop_times.txt"] + "T2,08:40:00,08:40:00,B,4\n"},
            "stop_times.txt line 10, stop_sequence: 4 repeated",
        ),
        (
            {
                "stop_times.txt": FEED["stop_times.txt"].replace(
                    "08:30:00,08:30:00", "08:15:00,08:15:00"
                )
            },
            "stop_times.txt line 9, arrival_time: before the previous departure",
        ),
        ({"trips.txt": FEED["trips.txt"].replace("R2,WK", "R2,XX")}, "'XX' is in no calendar"),
    ],
    ids=[
        "no-stops",
        "no-calendar",
        "no-column",
        "bad-date",
        "dup-stop",
        "dup-seq",
        "time-travel",
        "service",
    ],
)
def test_each_kind_of_error_names_where_it_is(
    override: dict[str, str | None],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    db: Path,
    tmp_path: Path,
) -> None:
    status, summary, err = run_import(capsys, write_feed(tmp_path / "f", **override), db)
    assert (status, summary["ok"]) == (2, False)
    assert expected in err


def test_a_file_that_is_not_a_feed_is_refused(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    status, summary, err = run_import(capsys, junk, db)
    assert (status, summary["ok"]) == (2, False)
    assert "cannot read GTFS feed" in err


# -- warnings ----------------------------------------------------------------------------------


def test_problems_that_do_not_stop_the_import_are_counted_as_warnings(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    folder = write_feed(
        tmp_path / "warn",
        **{
            "agency.txt": None,  # required by GTFS, but nothing here needs it
            "routes.txt": FEED["routes.txt"] + "R3,3,Unused,3\n",
            "stops.txt": FEED["stops.txt"] + "E,,-16.95,145.75\n",  # no name, never served
        },
    )
    status, summary, err = run_import(capsys, folder, db)
    assert status == 0
    assert summary["warnings"] == 4
    for expected in (
        "agency.txt: agency.txt missing",
        "routes.txt, route_id: R3: no trips",
        "stops.txt line 6, stop_name",
        "stops.txt, stop_id: E: no trip calls here",
    ):
        assert expected in err
    assert query(db, "SELECT COUNT(*) FROM gtfs_routes")[0][0] == 3


def test_untimed_stops_are_stored_with_interpolated_times(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    run_import(capsys, write_feed(tmp_path / "f"), db)
    times = [
        r[0]
        for r in query(
            db, "SELECT arrival_s FROM gtfs_stop_times WHERE trip_id = 'T1' ORDER BY stop_sequence"
        )
    ]
    assert times[0] == 7 * 3600 and times[-1] == 7 * 3600 + 30 * 60
    assert times[0] < times[1] < times[2] < times[3]


# -- stop times in any order, and many of them ------------------------------------------------


def test_stop_times_of_interleaved_trips_are_stored_like_sorted_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = FEED["stop_times.txt"].splitlines()
    header, t1, t2 = lines[0], lines[1:5], lines[5:9]
    mixed = [header] + [row for pair in zip(t2, reversed(t1), strict=True) for row in pair]
    sorted_db, mixed_db = tmp_path / "sorted.sqlite", tmp_path / "mixed.sqlite"
    run_import(capsys, write_feed(tmp_path / "sorted"), sorted_db)
    status, summary, _ = run_import(
        capsys,
        write_feed(tmp_path / "mixed", **{"stop_times.txt": "\n".join(mixed) + "\n"}),
        mixed_db,
    )
    assert (status, summary["stop_times"]) == (0, 8)
    sql = "SELECT * FROM gtfs_stop_times ORDER BY trip_id, stop_sequence"
    assert query(mixed_db, sql) == query(sorted_db, sql)


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_gtfs_import", REPO / "bench" / "gtfs_import.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_large_synthetic_feed_imports_completely(tmp_path: Path) -> None:
    # The benchmark's generator (bench/gtfs_import.py), smaller; its time is the bench's job.
    _bench_module().write_feed(tmp_path / "big", 80_000, unsorted=True)
    with (tmp_path / "big" / "stop_times.txt").open() as f:
        expected = sum(1 for _ in f) - 1
    store = CentralStore(tmp_path / "central.sqlite")
    try:
        result = import_gtfs(store, tmp_path / "big")
    finally:
        store.close()
    assert result.summary["stop_times"] == expected == 80_000
    assert result.summary["warnings"] == 0
    counted = query(
        tmp_path / "central.sqlite", "SELECT COUNT(DISTINCT trip_id) FROM gtfs_stop_times"
    )
    assert counted[0][0] == result.summary["trips"] == 2_000


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='T1AB,:0123456789\n"x ', max_size=300))
def test_any_stop_times_text_yields_rows_or_reports_never_crashes(text: str) -> None:
    header = "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
    report = Report()
    try:
        table = Table("stop_times.txt", io.StringIO(header + text))
        reader = StopTimeReader(
            table, report, {"T1", "T2"}, {"A": (-16.9, 145.7), "B": (-16.91, 145.71)}
        )
        rows = list(reader.rows(table))
    except (GtfsError, Unsorted):
        return
    assert all(len(r) == 6 and r[3] <= r[4] for r in rows)
    assert reader.count == len(rows)


# -- assignments against the imported feed ----------------------------------------------------


def test_an_assignment_to_an_unknown_trip_is_refused_once_a_feed_is_imported(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path, mosquitto: Broker
) -> None:
    store = CentralStore(db)
    try:
        check_assignment(store, Assignment(trip_id="nope"))  # no feed yet: anything goes
        import_gtfs(store, write_feed(tmp_path / "f"))
        check_assignment(store, Assignment(trip_id="T1"))
        check_assignment(store, Assignment(block_id="BL1", route_id="R2"))
        for wrong in (
            Assignment(trip_id="nope"),
            Assignment(block_id="nope"),
            Assignment(route_id="R9"),
            Assignment(trip_id="T1", route_id="R2"),
        ):
            with pytest.raises(AssignmentError):
                check_assignment(store, wrong)
    finally:
        store.close()
    # The command line says so and exits 2: central refuses, nothing is written or published.
    with central_running(central_config(mosquitto, db)):
        status = main(["central", "assign", "bus-01", "--trip", "nope", *cli_conn(mosquitto, db)])
    err = capsys.readouterr().err
    assert status == 2
    assert "unknown trip 'nope'" in err
    assert query(db, "SELECT COUNT(*) FROM desired")[0][0] == 0


def test_import_warns_on_a_calendar_that_has_ended(db: Path, tmp_path: Path) -> None:
    store = CentralStore(db)
    try:
        old = FEED["calendar.txt"].replace("20991231", "20240301")
        result = import_gtfs(store, write_feed(tmp_path / "f", **{"calendar.txt": old}), now=1.8e9)
    finally:
        store.close()
    assert [w.code for w in result.report.warnings] == ["feed_expired"]
    with pytest.raises(GtfsInvalid):
        store = CentralStore(db)
        try:
            import_gtfs(store, write_feed(tmp_path / "g", **{"trips.txt": "trip_id\nT1\n"}))
        finally:
            store.close()


def test_import_gtfs_never_writes_behind_a_running_central_it_cannot_reach(
    mosquitto: Broker, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A wrong broker port: the tool cannot ask the central that runs on this database, and
    # must not take that for "no central runs" and replace the timetable behind its back.
    with central_running(central_config(mosquitto, db)):
        status = main(["central", "import-gtfs", str(CAIRNS), "--db", str(db),
                       "--mqtt-port", str(free_port())])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert "a central service is running on" in err
    assert query(db, "SELECT COUNT(*) FROM gtfs_trips")[0][0] == 0
    # Once it has stopped, the same command fills the database directly.
    status, summary, _ = run_import(capsys, CAIRNS, db)
    assert status == 0 and summary["ok"] and query(db, "SELECT COUNT(*) FROM gtfs_trips")[0][0]


def test_a_broken_feed_reads_the_same_through_a_running_central_as_without_one(
    mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unknown stop (an error) and two stops without a name (warnings): with --list 1, one
    # warning is listed and the other counted.
    unnamed = "E,,-16.95,145.75\nF,,-16.95,145.76\n"
    broken = {
        "stop_times.txt": FEED["stop_times.txt"] + "T2,08:40:00,08:40:00,X0,5\n",
        "stops.txt": FEED["stops.txt"] + unnamed,
    }
    folder = write_feed(tmp_path / "f", **broken)
    args = ["central", "import-gtfs", str(folder), "--list", "1"]
    assert main([*args, "--db", str(tmp_path / "direct.sqlite")]) == 2
    direct_out, direct_err = capsys.readouterr()
    central_db = tmp_path / "central.sqlite"
    with central_running(central_config(mosquitto, central_db)):
        assert main([*args, *cli_conn(mosquitto, central_db)]) == 2
    out, err = capsys.readouterr()
    direct = json.loads(direct_out.splitlines()[-1])
    assert json.loads(out.splitlines()[-1]) == direct == {"ok": False, "errors": 1, "warnings": 2}
    lines = [line for line in direct_err.splitlines() if "X0" in line or "more warnings" in line]
    assert len(lines) == 2
    assert lines and all(line in err.splitlines() for line in lines)
    assert query(central_db, "SELECT COUNT(*) FROM gtfs_trips")[0][0] == 0
