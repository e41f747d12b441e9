"""Operator reports (issue 18) on a seeded month, on SQLite and on PostgreSQL: trips planned by
a small GTFS calendar (weekdays, a holiday that swaps the service) against hand-made journey
events, counted exactly (operated, partial, ended early, missed, late start); kilometres from
odometer deltas (a reset, a step back and a jump count no metres) and operating hours; the
CSV and JSON output parse back to the same rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from central.operator_reports import (
    mileage_report,
    punctuality_report,
    render,
    report_rows,
    trip_runs,
    trips_report,
)
from central.store.db import CentralStore
from central.store.pg_store import open_store
from protocols.ads.playlist import zone

TZ = "Australia/Brisbane"  # UTC+10, no daylight saving
JUNE = (dt.date(2026, 6, 1), dt.date(2026, 6, 30))
HOLIDAY = dt.date(2026, 6, 8)  # a Monday: calendar_dates removes "wk", adds "hol"
# trip: route, service, first departure (s after the service day's start), stop ids
TRIPS = {
    "T1": ("R1", "wk", 7 * 3600, ["A", "B", "C"]),
    "T2": ("R1", "wk", 8 * 3600, ["C", "B", "A"]),
    "T3": ("R2", "wk", 9 * 3600, ["C", "D"]),
    "H1": ("R1", "hol", 10 * 3600, ["A", "C"]),
}
WEEKDAYS = [
    JUNE[0] + dt.timedelta(days=i)
    for i in range(30)
    if (JUNE[0] + dt.timedelta(days=i)).weekday() < 5 and JUNE[0] + dt.timedelta(days=i) != HOLIDAY
]
# What the buses did of T1 and T3 on the n-th working day (the rest ran whole, on time).
T1_RUNS = {2: "skip_stop", 4: "ended_early", 6: "missed", 8: "late_400", 10: "late_200"}
T3_MISSED = {1, 3}


def local(day: dt.date, seconds: float) -> float:
    return dt.datetime.combine(day, dt.time(), zone(TZ)).timestamp() + seconds


@pytest.fixture
def store(central_db: str) -> Iterator[CentralStore]:
    s = open_store(central_db)
    try:
        seed(s)
        yield s
    finally:
        s.close()


def seed(store: CentralStore) -> None:
    conn = store.db.conn

    def insert(table: str, rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)

    with store.transaction():
        insert("gtfs_agency", [("ag", "Agency", "https://x", TZ, "en", None)])
        insert("gtfs_routes", [("R1", "ag", "1", "One", 3, None, None),
                               ("R2", "ag", "2", "Two", 3, None, None)])  # fmt: skip
        insert("gtfs_calendar", [("wk", 0b11111, "20260601", "20260731"),
                                 ("hol", 0, "20260601", "20260731")])  # fmt: skip
        insert("gtfs_calendar_dates", [("wk", "20260608", 2), ("hol", "20260608", 1)])
        insert("gtfs_trips", [(t, r, s, None, None, 0, None) for t, (r, s, _, _) in TRIPS.items()])
        insert("gtfs_stop_times", [
            (t, 10 + 5 * i, stop, start + 120 * i, start + 120 * i, None)
            for t, (_, _, start, stops) in TRIPS.items() for i, stop in enumerate(stops)
        ])  # fmt: skip
    events: list[tuple[Any, ...]] = []

    def event(bus: str, t: float, kind: str, data: object) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        events.append((bus, len(events) + 1, t, kind, 0, text, 0, t + 1.0))

    def run(bus: str, day: dt.date, trip: str, how: str = "whole") -> None:
        route, _, start, stops = TRIPS[trip]
        delay = {"late_400": 400, "late_200": 200}.get(how, 0)
        last = len(stops) - (2 if how == "ended_early" else 1)
        for i, stop in enumerate(stops[: last + 1]):
            if how == "skip_stop" and i == 1:
                continue
            t = local(day, start + 120 * i + delay)
            data = {"trip": trip, "route": route, "index": i, "stop": stop, "delay_s": delay}
            if i > 0:
                event(bus, t - 20, "arrived", data)
            if i < len(stops) - 1:
                event(bus, t, "departed", data)
                if i == 0:
                    event(bus, t, "trip_started", {"trip": trip, "route": route, "delay_s": delay})
            else:
                event(bus, t - 20, "trip_finished", data)

    for n, day in enumerate(WEEKDAYS):
        if T1_RUNS.get(n) != "missed" and day != WEEKDAYS[-1]:
            run("bus-1", day, "T1", T1_RUNS.get(n, "whole"))
        run("bus-1", day, "T2")
        if n not in T3_MISSED:
            run("bus-2", day, "T3")
    run("bus-3", HOLIDAY, "H1")
    run("bus-1", dt.date(2026, 7, 1), "T1")  # July: no run of the last day of June
    run("bus-1", dt.date(2026, 5, 29), "T1")  # May's Friday: not June's
    event("bus-1", local(WEEKDAYS[6], 7 * 3600), "departed", "{no json")
    event("bus-1", local(WEEKDAYS[6], 7 * 3600), "departed", {"trip": "nope", "index": 0})
    assert store.add_events(events) == len(events)
    store.add_records(telemetry())


TELEMETRY_KM = {("2026-06-02", "bus-1"): 5.2, ("2026-06-03", "bus-1"): 2.9,
                ("2026-06-02", "bus-2"): 2.5}  # fmt: skip


def telemetry() -> list[tuple[Any, ...]]:
    """bus-1 on June 2: 10 steps of 500 m a minute, engine running, then an hour's gap and
    200 m more (5.2 km; 600 s + a gap counted as 120 s); on June 3 (from where it stood
    overnight), driving (no rpm) with a
    reset to 0, a step back of 100 m and a jump of 1,000 km in a minute: 2.9 km, 3 faults,
    9 minutes. bus-2: odometers between samples without one; standing, engine off."""
    rows: list[tuple[Any, ...]] = []

    def rec(bus: str, t: float, odo: float | None, rpm: float | None, kmh: float | None) -> None:
        seq = len(rows) + 1
        rows.append((bus, seq, t, -16.9, 145.7, None, None, 3, 1.0, 8, 0, kmh, rpm, 0, None,
                     None, odo, 0, t + 1))  # fmt: skip

    t0 = local(dt.date(2026, 6, 2), 6 * 3600)
    for k in range(11):
        rec("bus-1", t0 + 60 * k, 10000 + 500 * k, 800, 20)
    rec("bus-1", t0 + 600 + 3600, 15200, 0, 0)
    t1 = local(dt.date(2026, 6, 3), 6 * 3600)
    odos = [15200, 15700, 16200, 0, 400, 900, 800, 1300, 1001300, 1001800]
    for k, odo in enumerate(odos):
        rec("bus-1", t1 + 60 * k, odo, 0, 30)
    for k, odo in enumerate([0, None, 1000, None, 2500]):
        rec("bus-2", t0 + 60 * k, odo, None, 0)
    return rows


def test_trips_planned_and_operated_are_counted_exactly(store: CentralStore) -> None:
    rows = trips_report(store, *JUNE)
    assert len(WEEKDAYS) == 21
    totals: dict[str, list[int]] = {}
    for r in rows:
        t = totals.setdefault(r.route, [0] * 5)
        for i, n in enumerate((r.planned, r.operated, r.partial, r.missed, r.late_starts)):
            t[i] += n
    # R1: T1 and T2 on 21 days, H1 on the holiday. T1: a skipped stop and an early end
    # (partial), missed on the 7th working day and on June 30, late once (400 s; 200 s is not)
    assert totals["R1"] == [43, 17 + 21 + 1, 2, 2, 1]
    assert totals["R2"] == [21, 19, 0, 2, 0]  # T3 missed twice
    holiday = [r for r in rows if r.day == HOLIDAY.isoformat()]
    assert [(r.route, r.planned, r.operated) for r in holiday] == [("R1", 1, 1)]
    assert not [r for r in rows if r.day in ("2026-06-06", "2026-06-07")]  # a weekend
    runs = {(r.day, r.trip): r for r in trip_runs(store, *JUNE)}
    skipped = runs[(WEEKDAYS[2].isoformat(), "T1")]
    assert (skipped.status, skipped.stops_served, skipped.buses) == ("partial", 2, "bus-1")
    assert runs[(WEEKDAYS[4].isoformat(), "T1")].status == "partial"  # ended early
    late = runs[(WEEKDAYS[8].isoformat(), "T1")]
    assert (late.status, late.late, late.start_delay_s) == ("operated", True, 400.0)
    assert runs[(WEEKDAYS[10].isoformat(), "T1")].late is False
    assert runs[("2026-06-30", "T1")].status == "missed"
    assert trips_report(store, *JUNE, route="R2") == [r for r in rows if r.route == "R2"]


def test_kilometres_come_from_odometer_deltas_never_negative(store: CentralStore) -> None:
    rows = mileage_report(store, *JUNE)
    assert {(r.day, r.bus): r.km for r in rows} == TELEMETRY_KM
    by = {(r.day, r.bus): r for r in rows}
    assert by[("2026-06-02", "bus-1")].operating_h == round(720 / 3600, 3)
    assert by[("2026-06-03", "bus-1")].operating_h == round(540 / 3600, 3)
    assert by[("2026-06-03", "bus-1")].odometer_faults == 3
    assert by[("2026-06-02", "bus-2")].operating_h == 0.0
    assert all(r.km >= 0 for r in rows)
    assert mileage_report(store, *JUNE, bus="bus-2") == [by[("2026-06-02", "bus-2")]]
    assert mileage_report(store, dt.date(2026, 6, 3), dt.date(2026, 6, 3), bus="bus-2") == []


def test_punctuality_by_route_stop_and_hour(store: CentralStore) -> None:
    rows = punctuality_report(store, *JUNE, route="R2")
    assert rows == [
        {"route": "R2", "stop": "C", "hour": 9, "departures": 19, "on_time_pct": 100.0,
         "mean_delay_s": 0.0},
    ]  # fmt: skip
    first_stop = [r for r in punctuality_report(store, *JUNE) if r["stop"] == "A"]
    t1 = next(r for r in first_stop if r["hour"] == 7)
    # T1 left A on 19 days (the 400 s late start counts in hour 7 local: 07:06:40)
    assert t1["departures"] == 19
    assert t1["on_time_pct"] == round(100 * 18 / 19, 1)


def test_csv_and_json_output_parse_back(store: CentralStore) -> None:
    for kind in ("trips", "mileage", "punctuality", "plays", "feedback"):
        rows = report_rows(store, kind, *JUNE)
        parsed_json = [json.loads(line) for line in render(kind, rows, "json").splitlines()]
        assert len(parsed_json) == len(rows)
        parsed_csv = list(csv.DictReader(io.StringIO(render(kind, rows, "csv"))))
        assert len(parsed_csv) == len(rows)
        for a, b, c in zip(rows, parsed_json, parsed_csv, strict=True):
            assert b == a
            assert c == {k: "" if v is None else str(v) for k, v in a.items()}
        table = render(kind, rows, "table").splitlines()
        assert len(table) == len(rows) + 1
    trips = report_rows(store, "trips", *JUNE)
    assert sum(r["planned"] for r in trips) == 64


def test_the_cli_prints_the_trips_report_as_csv(tmp_path: Any) -> None:
    import subprocess
    import sys

    db = tmp_path / "central.sqlite"
    s = CentralStore(db)
    seed(s)
    s.close()
    cmd = [sys.executable, "-m", "busfleet.cli", "central", "report", "trips", "--db", str(db),
           "--from", "2026-06-01", "--to", "2026-06-30", "--format", "csv",
           "--route", "R2"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 21
    assert sum(int(r["missed"]) for r in rows) == 2
    bad = subprocess.run([*cmd[:-4], "--to", "2026-05-01"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--to is before --from" in bad.stderr
