"""Proof-of-play reports: plays per item, per day, per route and bus, for advertisers.

Plays arrive as bus events of kind `play` (exactly once each: events are keyed on bus and
sequence number). Reading a month of a fleet's JSON event data for every report would be
slow, so the report first copies the plays that arrived since its last run (by `received`,
through the partial index `events_plays`) into the narrow `plays` table, whose index covers
the report's query. The copy is idempotent (keyed like the events) and looks back a minute
before its mark, so a worker committing late is never missed. Days are local days in the
city's timezone, each queried as its own [start, end) range of unix times.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, fields

from central.store.db import CentralStore
from protocols.ads.playlist import zone

SETTLE_S = 60.0  # look back this far before the mark: ingest transactions still committing

COPY = """
INSERT OR IGNORE INTO plays (bus, seq, t, item, route, seconds)
SELECT bus, seq, t, COALESCE(json_extract(data, '$.item'), ''),
       COALESCE(json_extract(data, '$.route'), ''),
       COALESCE(json_extract(data, '$.end') - json_extract(data, '$.start'), 0)
FROM events WHERE kind = 'play' AND received > ?
"""
QUERY = """
SELECT item, route, bus, COUNT(*), SUM(seconds) FROM plays
WHERE t >= ? AND t < ? GROUP BY item, route, bus ORDER BY item, route, bus
"""


@dataclass(frozen=True, slots=True)
class PlayRow:
    day: str  # local date, ISO
    item: str
    route: str  # empty when the bus had no route
    bus: str
    plays: int
    seconds: float  # time on screen, summed


def days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def day_bounds(day: dt.date, timezone: str) -> tuple[float, float]:
    """Unix [start, end) of a local day (23 or 25 hours long on DST days)."""
    tz = zone(timezone)
    start = dt.datetime.combine(day, dt.time(), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)
    return start.timestamp(), end.timestamp()


def refresh_plays(store: CentralStore) -> int:
    """Copy the play events that arrived since the last call into `plays`; returns how many."""
    conn = store.db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT received FROM report_marks WHERE name = 'plays'").fetchone()
        since = -1.0 if row is None else row[0] - SETTLE_S
        before = conn.total_changes
        conn.execute(COPY, (since,))
        copied = conn.total_changes - before
        newest = conn.execute("SELECT MAX(received) FROM events WHERE kind = 'play'").fetchone()
        if newest[0] is not None:
            conn.execute(
                "INSERT INTO report_marks (name, received) VALUES ('plays', ?)"
                " ON CONFLICT(name) DO UPDATE SET received = excluded.received",
                (newest[0],),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return copied


def plays_report(
    store: CentralStore,
    first: dt.date,
    last: dt.date,
    timezone: str = "UTC",
    *,
    item: str | None = None,
) -> list[PlayRow]:
    """Plays from `first` to `last` (inclusive, local days in `timezone`)."""
    refresh_plays(store)
    out = []
    for day in days(first, last):
        start, end = day_bounds(day, timezone)
        for row in store.db.execute(QUERY, (start, end)).fetchall():
            if item is not None and row[0] != item:
                continue
            out.append(PlayRow(day.isoformat(), row[0], row[1], row[2], row[3], row[4]))
    return out


def to_csv(rows: Iterable[PlayRow]) -> str:
    """CSV with a header line: day, item, route, bus, plays, seconds."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([f.name for f in fields(PlayRow)])
    for row in rows:
        values = list(astuple(row))
        values[-1] = f"{row.seconds:.1f}"
        writer.writerow(values)
    return buf.getvalue()
