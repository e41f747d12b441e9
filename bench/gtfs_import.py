"""GTFS import speed: a synthetic feed with millions of stop times into central's SQLite.

The feed is written to a temporary folder (or zip with --zip): routes, stops on a grid,
trips of 40 calls each, shapes, a weekly calendar with exceptions. It is a valid feed, so
the whole path runs: streaming csv, every check, executemany into one transaction.

Beside it, for comparison in the same run: the same stop_times.txt read by a bare
csv.reader (the floor for anything in Python reading that file), and the same rows, unchecked,
written by a bare executemany into an identical table (the floor for storing them).

Run: .venv/bin/python bench/gtfs_import.py [--stop-times 2000000] [--zip] [--unsorted]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from central.gtfs_import import import_gtfs  # noqa: E402 - after the path set-up
from central.store.db import CentralStore  # noqa: E402

CALLS_PER_TRIP = 40


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_feed(folder: Path, stop_times: int, *, unsorted: bool = False) -> None:
    """A valid synthetic feed of about `stop_times` stop times in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    n_trips = max(1, stop_times // CALLS_PER_TRIP)
    n_routes = max(1, min(500, n_trips // 50))
    n_stops = (n_routes + 1) * CALLS_PER_TRIP // 2  # every stop served

    def write(name: str, header: list[str], rows: object) -> None:
        with (folder / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)  # type: ignore[arg-type]

    write(
        "agency.txt",
        ["agency_id", "agency_name", "agency_url", "agency_timezone"],
        [["A", "Synthetic Transit", "https://example.org", "Europe/Berlin"]],
    )
    write(
        "calendar.txt",
        [
            "service_id",
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
            "start_date",
            "end_date",
        ],
        [
            ["WD", 1, 1, 1, 1, 1, 0, 0, "20300101", "20301231"],
            ["SA", 0, 0, 0, 0, 0, 1, 0, "20300101", "20301231"],
            ["SU", 0, 0, 0, 0, 0, 0, 1, "20300101", "20301231"],
        ],
    )
    write(
        "calendar_dates.txt",
        ["service_id", "date", "exception_type"],
        [["WD", "20301225", 2], ["SU", "20301225", 1]],
    )
    # Stops on a grid, numbered as a snake, so that stop i and i + 1 are always neighbours.
    grid = int(n_stops**0.5) + 1

    def place(i: int) -> tuple[float, float]:
        row, col = divmod(i, grid)
        return 52.40 + row * 0.003, 13.30 + (col if row % 2 == 0 else grid - 1 - col) * 0.004

    stops = [(f"S{i}", *place(i)) for i in range(n_stops)]
    write(
        "stops.txt",
        ["stop_id", "stop_name", "stop_lat", "stop_lon"],
        ([sid, f"Stop {sid}", f"{lat:.6f}", f"{lon:.6f}"] for sid, lat, lon in stops),
    )
    write(
        "routes.txt",
        ["route_id", "agency_id", "route_short_name", "route_long_name", "route_type"],
        ([f"R{r}", "A", str(r), f"Line {r}", 3] for r in range(n_routes)),
    )
    # Two patterns per route (the two directions), each a walk over neighbouring stops.
    patterns: dict[tuple[int, int], list[int]] = {}
    for r in range(n_routes):
        start = r * CALLS_PER_TRIP // 2
        walk = list(range(start, start + CALLS_PER_TRIP))
        patterns[(r, 0)], patterns[(r, 1)] = walk, walk[::-1]
    write(
        "shapes.txt",
        ["shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"],
        (
            [f"SH{r}_{d}", f"{stops[s][1]:.6f}", f"{stops[s][2]:.6f}", k]
            for (r, d), walk in patterns.items()
            for k, s in enumerate(walk)
        ),
    )
    trips = [(t, t % n_routes, (t // n_routes) % 2) for t in range(n_trips)]
    write(
        "trips.txt",
        ["route_id", "service_id", "trip_id", "direction_id", "shape_id", "block_id"],
        (
            [f"R{r}", ("WD", "SA", "SU")[t % 3], f"T{t}", d, f"SH{r}_{d}", f"B{t // 8}"]
            for t, r, d in trips
        ),
    )

    def calls(t: int, r: int, d: int) -> list[list[object]]:
        start = 5 * 3600 + (t * 37) % (18 * 3600)
        out: list[list[object]] = []
        for k, s in enumerate(patterns[(r, d)]):
            arr = start + k * 90
            hms = f"{arr // 3600:02d}:{arr % 3600 // 60:02d}:{arr % 60:02d}"
            out.append([f"T{t}", hms, hms, stops[s][0], k + 1])
        return out

    header = ["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence"]
    if unsorted:  # the rows of each trip interleaved with the next one's

        def rows() -> object:
            for i in range(0, len(trips), 2):
                pair = [calls(*trips[j]) for j in range(i, min(i + 2, len(trips)))]
                for k in range(CALLS_PER_TRIP):
                    for c in pair:
                        yield c[k]
    else:

        def rows() -> object:
            for trip in trips:
                yield from calls(*trip)

    write("stop_times.txt", header, rows())


def bare_csv(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with path.open(newline="") as f:
        n = sum(1 for _ in csv.reader(f)) - 1
    return time.perf_counter() - started, n


def bare_insert(path: Path) -> float:
    """The same rows, unchecked and as text, into an identical table in a fresh database."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "bare.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE st (trip_id TEXT NOT NULL, stop_sequence INTEGER NOT NULL,"
            " stop_id TEXT NOT NULL, arrival_s INTEGER NOT NULL, departure_s INTEGER NOT NULL,"
            " shape_dist REAL, PRIMARY KEY (trip_id, stop_sequence)) WITHOUT ROWID"
        )
        with path.open(newline="") as f:
            reader = csv.reader(f)
            next(reader)
            started = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO st VALUES (?, ?, ?, ?, ?, NULL)",
                ((r[0], int(r[4]), r[3], r[1], r[2]) for r in reader),
            )
            conn.execute("COMMIT")
            took = time.perf_counter() - started
        conn.close()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop-times", type=int, default=2_000_000)
    parser.add_argument("--zip", action="store_true", help="import from a zip archive")
    parser.add_argument("--unsorted", action="store_true", help="interleave trips' rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "feed"
        log(f"writing a synthetic feed with ~{args.stop_times:,} stop times...")
        write_feed(folder, args.stop_times, unsorted=args.unsorted)
        source: Path = folder
        if args.zip:
            source = Path(tmp) / "feed.zip"
            with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(folder.iterdir()):
                    zf.write(f, f.name)
        csv_s, rows = bare_csv(folder / "stop_times.txt")
        insert_s = bare_insert(folder / "stop_times.txt")
        store = CentralStore(Path(tmp) / "central.sqlite")
        started, cpu = time.perf_counter(), time.process_time()
        result = import_gtfs(store, source)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        store.close()
    figures = {
        "stop_times": result.summary["stop_times"],
        "trips": result.summary["trips"],
        "import_s": round(took, 2),
        "import_cpu_s": round(cpu, 2),  # on a shared machine, wall time includes waiting
        "stop_times_per_s": round(rows / took),
        "baseline_bare_csv_read_s": round(csv_s, 2),
        "baseline_bare_executemany_s": round(insert_s, 2),
        "warnings": result.summary["warnings"],
        "zip": args.zip,
        "unsorted": args.unsorted,
    }
    log(
        f"imported {rows:,} stop times in {took:.1f} s ({rows / took:,.0f}/s); "
        f"bare csv read {csv_s:.1f} s, bare executemany {insert_s:.1f} s"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
