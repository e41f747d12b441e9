"""Proof-of-play reports: plays per item, per day, per route and bus, for advertisers.

Plays arrive as bus events of kind `play` (exactly once each: events are keyed on bus and
sequence number). Reading a month of a fleet's JSON event data for every report would be
slow, so the report first copies the plays that arrived since its last run (by `received`,
through the partial index `events_plays`) into the narrow `plays` table. The copy is
idempotent (keyed like the events) and looks back a minute before its mark, so a worker
committing late is never missed. Days are local days in the city's timezone, each queried as
its own [start, end) range of unix times: from `play_hours` (per hour, item, route and bus,
kept by triggers on `plays`) when the day begins and ends on a whole hour, as in every zone
with a whole-hour offset; from `plays` otherwise (Adelaide's or India's half hours).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, fields

from central.store import ads as ads_db
from central.store import queries as query_db
from central.store.db import CentralStore
from protocols.ads.playlist import zone

SETTLE_S = 60.0  # look back this far before the mark: ingest transactions still committing


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
    return ads_db.copy_plays(store, SETTLE_S)


def refresh_departures(store: CentralStore) -> int:
    """Copy the departures that arrived since the last call into `departures` (what the
    punctuality report reads); returns how many."""
    return query_db.copy_departures(store, SETTLE_S)


def plays_report(
    store: CentralStore,
    first: dt.date,
    last: dt.date,
    timezone: str = "UTC",
    *,
    item: str | None = None,
    limit: int | None = None,
) -> list[PlayRow]:
    """Plays from `first` to `last` (inclusive, local days in `timezone`); the first `limit`
    rows only, when given (the later days are not read)."""
    refresh_plays(store)
    out: list[PlayRow] = []
    for day in days(first, last):
        if limit is not None and len(out) >= limit:
            return out[:limit]
        start, end = day_bounds(day, timezone)
        whole_hours = not (start % 3600 or end % 3600)
        totals = query_db.play_hour_totals if whole_hours else ads_db.play_totals
        for row in totals(store, start, end):
            if item is not None and row[0] != item:
                continue
            out.append(PlayRow(day.isoformat(), *row))
    return out if limit is None else out[:limit]


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
