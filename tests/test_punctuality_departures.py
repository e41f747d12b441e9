"""Punctuality at a month of a fleet (issue 15): the report reads `departures` (each `departed`
event's route and delay, copied from the events as the plays are, deleted with them) instead of
every event's JSON. Its figures must be the ones the events give, through ingest, resends,
later arrivals and retention's purges; an event whose data is no JSON is stored and left out of
the figures, never a failed report."""

from __future__ import annotations

import json
import statistics

from central.service.queries import ON_TIME, report
from central.store import retention as retention_db
from central.store.pg_store import open_store

NOW = 1_780_000_000.0
DELAYS = [0, 30, 30, 30, 400, -90, 1200, 61, 61, 299.5, 7]


def departed(bus: str, seq: int, t: float, data: object) -> tuple[object, ...]:
    text = data if isinstance(data, str) else json.dumps(data)
    return (bus, seq, t, "departed", 0, text, 0, t + 1.0)


def expected(rows: list[tuple[object, ...]], since: float) -> list[dict[str, object]]:
    """The report's figures computed here from the events, one departure at a time."""
    delays: dict[str, list[float]] = {}
    for _bus, _seq, t, _kind, _sev, text, _bf, _rcv in rows:
        try:
            data = json.loads(str(text))
        except ValueError:
            continue
        delay = data.get("delay_s")
        if float(str(t)) >= since and isinstance(delay, int | float):
            delays.setdefault(str(data.get("route") or "?"), []).append(float(delay))
    out = []
    for route, ds in sorted(delays.items()):
        ds.sort()
        on_time = sum(1 for d in ds if ON_TIME[0] <= d <= ON_TIME[1])
        out.append({
            "route": route, "departures": len(ds),
            "on_time_pct": round(100.0 * on_time / len(ds), 1),
            "mean_delay_s": round(statistics.fmean(ds)),
            "p90_delay_s": round(ds[min(len(ds) - 1, int(0.9 * len(ds)))]),
        })  # fmt: skip
    return out


def test_punctuality_gives_the_events_figures_through_duplicates_bad_data_and_purges(
    central_db: str,
) -> None:
    store = open_store(central_db)
    rows = []
    for i, delay in enumerate(DELAYS * 3):
        route = ("R1", "R2", None, "")[i % 4]
        rows.append(departed(f"bus-{i % 3}", i, NOW - 86400.0 * (i % 4) - 60 * i, {
            "trip": "t1", "route": route, "delay_s": delay,
        }))  # fmt: skip
    rows.append(departed("bus-9", 1, NOW - 100, {"route": "R1", "delay_s": "late"}))
    # Text that looks like a number is no delay (a REAL column would take "120" for 120.0, and
    # "1e999" for infinity, which no report can round).
    rows.append(departed("bus-9", 4, NOW - 70, {"route": "R1", "delay_s": "120"}))
    rows.append(departed("bus-9", 5, NOW - 60, {"route": "R2", "delay_s": "1e999"}))
    rows.append(departed("bus-9", 2, NOW - 90, {"route": "R1"}))
    rows.append(departed("bus-9", 3, NOW - 80, "{not json"))
    assert store.add_events(rows) == len(rows)  # the event with no JSON is stored too
    assert store.add_events(rows[:5]) == 0  # resends change nothing
    _, tables = report(store, "punctuality", {"days": 7}, NOW)  # copies what arrived so far
    late = [departed("bus-7", 1, NOW - 50, {"route": "R3", "delay_s": 20})]
    late += [departed("bus-7", 2, NOW - 40, {"route": "R1", "delay_s": 30})]
    assert store.add_events(late) == 2
    rows += late
    for days in (1, 2, 7):
        _, tables = report(store, "punctuality", {"days": days}, NOW)
        assert tables["punctuality"] == expected(rows, NOW - days * 86400.0), days
    _, tables = report(store, "punctuality", {"days": 7}, NOW)
    assert {r["route"] for r in tables["punctuality"]} == {"R1", "R2", "R3", "?"}

    cutoff = NOW - 1.5 * 86400.0  # retention purges the older events: they leave the report
    while retention_db.purge_batch(store, "events", cutoff, 4):
        pass
    kept = [r for r in rows if float(str(r[2])) >= cutoff or float(str(r[7])) >= cutoff]
    assert len(kept) < len(rows)
    _, tables = report(store, "punctuality", {"days": 7}, NOW)
    assert tables["punctuality"] == expected(kept, NOW - 7 * 86400.0)
    store.close()
