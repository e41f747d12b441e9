"""Malformed and hostile GTFS feeds: each refused with a clear reason, in bounded memory, the
imported timetable left in place; feeds in Windows-1252 imported with a warning."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from central.gtfs_import import GtfsInvalid, import_gtfs
from central.store.db import CentralStore
from tests.test_gtfs_import import FEED, write_feed

REPO = Path(__file__).resolve().parent.parent


def trips_in(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT trip_id FROM gtfs_trips ORDER BY trip_id")]


CLI = "import sys; from busfleet.cli import main; sys.exit(main(sys.argv[1:]))"


def cli_import(db: Path, path: Path, *extra: str) -> tuple[int, dict[str, object], str]:
    """The command line without a central (it fills the database itself)."""
    command = ["central", "import-gtfs", str(path), "--db", str(db), "--mqtt-port", "1"]
    proc = subprocess.run(
        [sys.executable, "-c", CLI, *command, *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
    return proc.returncode, json.loads(last), proc.stderr


def wide_unsorted_stop_times(extra_columns: int) -> str:
    extra = ",".join(f"x{i}" for i in range(extra_columns))
    head = f"trip_id,arrival_time,departure_time,stop_id,stop_sequence,{extra}\n"
    # T1 comes back after T2: the importer replays the file grouped by trip.
    return head + (
        "T1,07:00:00,07:00:00,A,1\nT2,08:00:00,08:00:00,D,1\nT2,08:30:00,08:30:00,A,2\n"
        "T1,07:30:00,07:31:00,D,2\n"
    )


def test_unsorted_stop_times_with_thousands_of_columns_are_refused_not_a_crash(
    tmp_path: Path,
) -> None:
    db = tmp_path / "central.sqlite"
    assert cli_import(db, write_feed(tmp_path / "good"))[0] == 0
    status, summary, err = cli_import(
        db, write_feed(tmp_path / "wide", **{"stop_times.txt": wide_unsorted_stop_times(2100)})
    )
    assert status == 2, err
    assert "Traceback" not in err
    assert "stop_times.txt line 1: 2105 columns, at most 500" in err
    assert summary == {"ok": False, "errors": 1, "warnings": 0}
    assert trips_in(db) == ["T1", "T2"]


def test_unsorted_stop_times_with_extra_columns_still_import(tmp_path: Path) -> None:
    store = CentralStore(str(tmp_path / "c.sqlite"))
    try:
        feed = write_feed(tmp_path / "f", **{"stop_times.txt": wide_unsorted_stop_times(300)})
        result = import_gtfs(store, feed)
    finally:
        store.close()
    assert result.summary["stop_times"] == 4


@pytest.mark.parametrize(
    "blank",
    [
        {name: "\n\n\n" for name in FEED},
        {
            name: text.split("\n", 1)[0] + "\n\n\n"
            for name, text in FEED.items()
            if name not in ("agency.txt", "calendar.txt")
        },
    ],
    ids=["only-blank-lines", "headers-then-blank-lines"],
)
def test_a_feed_of_blank_lines_is_refused_and_the_timetable_stays(
    tmp_path: Path, blank: dict[str, str]
) -> None:
    db = tmp_path / "central.sqlite"
    assert cli_import(db, write_feed(tmp_path / "good"))[0] == 0
    status, summary, err = cli_import(db, write_feed(tmp_path / "blank", **blank))
    assert status == 2 and summary["ok"] is False, err
    assert "Traceback" not in err
    assert trips_in(db) == ["T1", "T2"]


def test_a_feed_without_trips_says_so(tmp_path: Path) -> None:
    store = CentralStore(str(tmp_path / "c.sqlite"))
    try:
        with pytest.raises(GtfsInvalid) as caught:
            import_gtfs(
                store,
                write_feed(
                    tmp_path / "f",
                    **{
                        "trips.txt": "route_id,service_id,trip_id\n",
                        "stop_times.txt": FEED["stop_times.txt"].split("\n", 1)[0] + "\n",
                    },
                ),
            )
    finally:
        store.close()
    codes = {i.code for i in caught.value.report.errors}
    assert codes == {"empty_feed"}
    assert "trips.txt: no trips" in str(caught.value.report.errors[0])


PEAK_SCRIPT = """
import sys, tracemalloc
from central.gtfs_import import GtfsInvalid, import_gtfs
from central.store.db import CentralStore
store = CentralStore(sys.argv[2])
tracemalloc.start()
try:
    import_gtfs(store, sys.argv[1])
    print("imported")
except GtfsInvalid as exc:
    print([str(i) for i in exc.report.errors])
print(tracemalloc.get_traced_memory()[1])
"""


def test_a_zip_with_one_huge_line_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in FEED.items():
            if name != "stop_times.txt":
                zf.writestr(name, text)
        with zf.open("stop_times.txt", "w") as member:
            member.write(FEED["stop_times.txt"].encode())
            member.write(b"T2,")
            block = b"x" * (1 << 20)
            for _ in range(50):  # one line of 50 MB: about 50 kB compressed
                member.write(block)
            member.write(b"\n")
    assert archive.stat().st_size < 1_000_000
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(archive), str(tmp_path / "c.sqlite")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    errors, peak = proc.stdout.splitlines()[-2:]
    assert "stop_times.txt line 10: longer than 100000 characters" in errors
    assert int(peak) < 10_000_000  # the line is 50 MB: it was never held


def test_a_member_bigger_than_the_cap_is_refused_while_it_is_read(tmp_path: Path) -> None:
    folder = write_feed(tmp_path / "f")
    store = CentralStore(str(tmp_path / "c.sqlite"))
    try:
        with pytest.raises(GtfsInvalid) as caught:
            import_gtfs(store, folder, max_file_bytes=200)
    finally:
        store.close()
    assert "stop_times.txt is larger than 200 bytes" in str(caught.value.report.errors)


def cp1252_feed(folder: Path) -> Path:
    write_feed(folder)
    stops = FEED["stops.txt"].replace("Stop A", "Bahnhofstraße Süd \u2013 Café")
    (folder / "stops.txt").write_bytes(stops.encode("cp1252"))
    return folder


def test_a_windows_1252_feed_imports_with_a_warning_naming_the_encoding(tmp_path: Path) -> None:
    db = tmp_path / "central.sqlite"
    status, summary, err = cli_import(db, cp1252_feed(tmp_path / "f"))
    assert status == 0, err
    assert summary["encoding"] == "cp1252: stops.txt; utf-8: agency.txt, calendar.txt, " \
        "routes.txt, stop_times.txt, trips.txt"  # fmt: skip
    assert "warning: stops.txt: not UTF-8: read as Windows-1252 (cp1252)" in err
    with sqlite3.connect(db) as conn:
        [(name,)] = conn.execute("SELECT name FROM gtfs_stops WHERE stop_id = 'A'")
    assert name == "Bahnhofstraße Süd \u2013 Café"


def test_an_encoding_can_be_forced_and_a_wrong_one_is_refused_clearly(tmp_path: Path) -> None:
    folder = cp1252_feed(tmp_path / "f")
    db = tmp_path / "central.sqlite"
    status, summary, err = cli_import(db, folder, "--encoding", "latin-1")
    assert status == 0 and summary["encoding"] == "iso8859-1", err
    assert "not UTF-8" not in err
    with sqlite3.connect(db) as conn:
        [(name,)] = conn.execute("SELECT name FROM gtfs_stops WHERE stop_id = 'A'")
    assert name == "Bahnhofstraße Süd \x96 Café"  # what Latin-1 makes of cp1252's dash
    status, summary, err = cli_import(db, folder, "--encoding", "utf-8")
    assert status == 2 and "error: stops.txt: not utf-8" in err, err
    status, _, err = cli_import(db, folder, "--encoding", "klingon")
    assert status == 2 and "unknown encoding 'klingon'" in err and "Traceback" not in err


def test_a_utf8_feed_with_a_byte_order_mark_is_utf8(tmp_path: Path) -> None:
    folder = write_feed(tmp_path / "f")
    stops = FEED["stops.txt"].replace("Stop A", "Süd")
    (folder / "stops.txt").write_bytes(b"\xef\xbb\xbf" + stops.encode())
    store = CentralStore(str(tmp_path / "c.sqlite"))
    try:
        result = import_gtfs(store, folder)
    finally:
        store.close()
    assert result.summary["encoding"] == "utf-8"
    assert not [w for w in result.report.warnings if w.code == "not_utf8"]


def test_digits_that_are_not_ascii_are_refused_as_values(tmp_path: Path) -> None:
    stop_times = FEED["stop_times.txt"].replace("08:30:00,A,4", "08:30:00,A,\u00b2")
    store = CentralStore(str(tmp_path / "c.sqlite"))
    try:
        with pytest.raises(GtfsInvalid) as caught:
            import_gtfs(store, write_feed(tmp_path / "f", **{"stop_times.txt": stop_times}))
    finally:
        store.close()
    assert "stop_sequence: not an integer" in str(caught.value.report.errors[0])


def test_a_zip_with_a_corrupt_deflate_stream_is_refused_with_one_clear_line(
    tmp_path: Path,
) -> None:
    # zlib.error escaped the importer: central answered "failed" with a traceback in its log,
    # and the CLI working on a database printed one.
    source = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(damaged, "w", zipfile.ZIP_DEFLATED) as z:
        for name in src.namelist():
            z.writestr(name, src.read(name))
    data = bytearray(damaged.read_bytes())
    at = data.find(b"stop_times.txt") + 200
    for k in range(at, at + 50):
        data[k] ^= 0x5A
    damaged.write_bytes(bytes(data))
    store = CentralStore(tmp_path / "direct.sqlite")
    try:
        with pytest.raises(GtfsInvalid, match=r"stop_times\.txt"):
            import_gtfs(store, damaged)
    finally:
        store.close()
    status, _summary, err = cli_import(tmp_path / "cli.sqlite", damaged)
    assert status == 2 and "Traceback" not in err and "stop_times.txt" in err, err
