"""Proof of play at a month of a fleet (issue 15): the report reads the plays' sums per hour
(`play_hours`, kept by triggers on `plays`) for days that begin on a whole hour, and its copy of
new plays finds them by arrival, not by reading every play stored. The figures must be the
ones the plays themselves give, after copies and after retention's purges."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from central.reports import day_bounds, days, plays_report, refresh_plays
from central.store import ads as ads_db
from central.store import queries as query_db
from central.store import retention as retention_db
from central.store.db import CentralStore
from central.store.pg_sql import translate
from central.store.pg_store import PgCentralStore, open_store

DAY = dt.date(2026, 3, 10)
START = dt.datetime(2026, 3, 9, 18, tzinfo=dt.UTC).timestamp()  # 18:00 the day before, UTC


def play_events(first_seq: int, n: int, bus: str, lag: float = 5.0) -> list[tuple[object, ...]]:
    """`n` plays of `bus`, one every 17 minutes from START: across hours and days; central
    stores each `lag` seconds after it began."""
    rows: list[tuple[object, ...]] = []
    for i in range(n):
        t = START + i * 17 * 60.0
        seconds = (10.0, 15.5, 7.25)[i % 3]  # exact in binary: sums compare exactly
        data = {"item": f"ad{i % 4}", "route": f"r{i % 2}", "start": t, "end": t + seconds}
        rows.append((bus, first_seq + i, t, "play", 0, json.dumps(data), 0, t + lag))
    return rows


def from_the_plays(store: CentralStore, first: dt.date, last: dt.date, tz: str) -> list[tuple]:
    """The report's rows as the plays give them, one play at a time."""
    out = []
    for day in days(first, last):
        start, end = day_bounds(day, tz)
        out += [(day.isoformat(), *row) for row in ads_db.play_totals(store, start, end)]
    return out


def report_rows(store: CentralStore, first: dt.date, last: dt.date, tz: str) -> list[tuple]:
    rows = plays_report(store, first, last, tz)
    return [(r.day, r.item, r.route, r.bus, r.plays, r.seconds) for r in rows]


def test_the_plays_per_hour_add_up_to_the_plays_after_copies_and_purges(central_db: str) -> None:
    store = open_store(central_db)
    first, last = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
    store.add_events(play_events(1, 120, "bus-1") + play_events(1, 80, "bus-2"))
    for tz in ("UTC", "Australia/Brisbane", "Australia/Adelaide", "Asia/Kathmandu"):
        rows = report_rows(store, first, last, tz)
        assert len(rows) >= 12  # 4 items, 2 buses, on 2 or 3 local days
        assert rows == from_the_plays(store, first, last, tz), tz
    whole = plays_report(store, first, last, "UTC")
    for limit in (1, 5, 9, len(whole), len(whole) + 1):  # the dashboard's first rows only
        assert plays_report(store, first, last, "UTC", limit=limit) == whole[:limit]
    store.add_events(play_events(500, 60, "bus-3", lag=3 * 86400.0))  # a later copy adds
    assert refresh_plays(store) == 60  # plays copied, not their hours' updates besides
    hours = store.db.execute("SELECT SUM(plays), COUNT(DISTINCT bus) FROM play_hours").fetchone()
    assert tuple(hours) == (260, 3)
    assert report_rows(store, first, last, "UTC") == from_the_plays(store, first, last, "UTC")
    cutoff = START + 30 * 17 * 60.0  # retention purges the oldest plays and their copies
    while retention_db.purge_batch(store, "plays", cutoff, 25):
        pass
    rows = report_rows(store, first, last, "UTC")
    assert rows == from_the_plays(store, first, last, "UTC")
    assert sum(r[4] for r in rows) == 260 - 2 * 30  # bus-3 stored its plays days later
    empty = "SELECT COUNT(*) FROM play_hours WHERE plays <= 0"
    assert store.db.execute(empty).fetchone()[0] == 0  # an hour whose plays all went is gone
    store.close()


def test_the_plays_copy_reads_the_new_plays_by_arrival_not_every_play(tmp_path: Path) -> None:
    store = CentralStore(tmp_path / "central.sqlite")
    plan = store.db.execute("EXPLAIN QUERY PLAN " + ads_db._COPY, {"since": 0.0}).fetchall()
    assert "events_plays (kind=? AND received>?)" in " ".join(str(r[3]) for r in plan)
    store.close()


def test_on_postgresql_the_copies_start_their_index_scan_at_the_mark(postgres_url: str) -> None:
    """PostgreSQL drops `kind = ...` from a partial index's condition when it is the index's
    predicate: a scan of events_plays (kind, received) for `received > mark` would then read
    the whole index (190 ms at 7 M plays, at every report), not start at the mark."""
    store = open_store(postgres_url)
    assert isinstance(store, PgCentralStore)
    raw = store.pg.conn.raw
    raw.execute("SET enable_seqscan = off")  # an empty table: the plan a full one gets
    raw.execute("SET enable_bitmapscan = off")
    copies = {"events_plays": ads_db._COPY_SQL, "events_departed": query_db._COPY_DEPARTURES}
    for index, sql in copies.items():
        text = "EXPLAIN " + translate(sql["postgresql"], named=True)
        plan = "\n".join(str(r[0]) for r in raw.execute(text, {"since": 0.0}))
        assert f"Index Scan using {index} on events" in plan, plan
        assert "Index Cond: ((ROW(kind, received) > ROW(" in plan, plan
    store.close()
