"""The journey events the prediction model learns from (central/predictions/learn.py).

A bus records `arrived`, `departed` and `passed` with the trip, the stop's index in the trip
and its stop id in the event's JSON. This reads them for a time window, one row per event,
the JSON fields taken apart in SQL (a text per dialect: SQLite's json_extract behind
json_valid, PostgreSQL's json_field and json_number of migration 9, which never raise), in
the order learning walks them: per bus, by time. Events without a trip or an index (a
diversion's temporary stop) or whose data is no JSON are left out here.

`passages` streams them (SQLite's cursor, PostgreSQL's server-side one): two weeks of a
100-bus fleet are 1.4 M rows, about a gigabyte as a list, which learning never needs at once.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import NamedTuple

from central.store.backend import dialect
from central.store.db import CentralStore

__all__ = ["PASSAGE_KINDS", "Passage", "passages", "stop_passages", "trip_schedule"]

PASSAGE_KINDS = ("arrived", "departed", "passed")


class Passage(NamedTuple):
    """One stop event of a trip: when `bus` arrived at, left or passed stop `stop_index`."""

    bus: str
    t: float
    kind: str
    trip: str
    stop_index: int
    stop: str


_PASSAGES = {
    "sqlite": """
SELECT bus, t, kind, trip, idx, stop FROM (
  SELECT bus, seq, t, kind,
         CASE WHEN json_valid(data) THEN json_extract(data, '$.trip') END AS trip,
         CASE WHEN json_valid(data) AND json_type(data, '$.index') = 'integer'
              THEN json_extract(data, '$.index') END AS idx,
         CASE WHEN json_valid(data) THEN json_extract(data, '$.stop') END AS stop
  FROM events WHERE kind IN ('arrived', 'departed', 'passed') AND t >= :since AND t < :until
) WHERE trip IS NOT NULL AND idx IS NOT NULL AND stop IS NOT NULL
ORDER BY bus, t, seq
""",
    "postgresql": """
SELECT bus, t, kind, trip, idx, stop FROM (
  SELECT bus, seq, t, kind, json_field(data, 'trip') AS trip,
         json_number(data, 'index') AS idx, json_field(data, 'stop') AS stop
  FROM events WHERE kind IN ('arrived', 'departed', 'passed') AND t >= :since AND t < :until
) AS e WHERE trip IS NOT NULL AND idx IS NOT NULL AND stop IS NOT NULL
ORDER BY bus, t, seq
""",
}


def stop_passages(store: CentralStore, since: float, until: float) -> list[Passage]:
    """The arrived / departed / passed events with `since <= t < until`, per bus by time."""
    return list(passages(store, since, until))


def passages(store: CentralStore, since: float, until: float) -> Generator[Passage, None, None]:
    """`stop_passages`, streamed: close it (or read it to the end) to free the cursor."""
    cursor = store.db.conn.cursor()
    try:
        cursor.execute(_PASSAGES[dialect(store)], {"since": since, "until": until})
        for bus, t, kind, trip, idx, stop in cursor:
            index = float(idx)
            if index != int(index) or index < 0:  # PostgreSQL's json_number takes 1.5 too
                continue
            yield Passage(str(bus), float(t), str(kind), str(trip), int(index), str(stop))
    finally:
        cursor.close()


def trip_schedule(store: CentralStore, trip_id: str) -> list[tuple[str, int, int, int]]:
    """(stop_id, stop_sequence, arrival_s, departure_s) of a trip's calls in the imported
    timetable, in order; seconds from the service day's midnight."""
    sql = (
        "SELECT stop_id, stop_sequence, arrival_s, departure_s FROM gtfs_stop_times"
        " WHERE trip_id = ? ORDER BY stop_sequence"
    )
    return [(str(a), int(b), int(c), int(d)) for a, b, c, d in store.db.execute(sql, [trip_id])]
