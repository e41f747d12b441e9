"""Advertising: the media library's index, playlists, and plays for proof-of-play reports.

The rules are central/media.py's, central/playlists.py's and central/reports.py's. Plays
arrive as `play` events; `copy_plays` copies those that arrived since its last run (by
`received`, through the partial index `events_plays`) into the narrow `plays` table, whose
index covers `play_totals`. The copy is keyed like the events, so running it twice is
harmless, and it looks back `settle_s` before its mark for workers still committing.
"""

from __future__ import annotations

from typing import Any

from central.store.backend import dialect
from central.store.db import CentralStore
from central.store.queries import save_report_mark

__all__ = [
    "MEDIA_COLUMNS",
    "add_media",
    "copy_plays",
    "media_named",
    "media_prefixed",
    "media_row",
    "media_rows",
    "play_totals",
    "playlist_bodies",
    "playlist_body",
    "save_playlist_body",
]

MEDIA_COLUMNS = ("sha256", "name", "mime", "kind", "size", "imported")
_SELECT = ", ".join(MEDIA_COLUMNS)

# In each dialect (backend.py), alike: '' for an item or route that is not there (or data that
# is no JSON: never an error), 0 s unless start and end are both numbers. PostgreSQL's
# json_field and json_number (pg_schema.py, migration 9) never raise. The row comparison is
# for PostgreSQL's planner: it drops `kind = 'play'` from the index condition of the partial
# index events_plays (kind, received), being the index's predicate, and then scans the whole
# index for `received > ...` (190 ms at 7 M plays, at every report); the row comparison gives
# the scan its start. `received > :since` stays for the row estimate.
_COPY_SQL = {
    "sqlite": """
INSERT OR IGNORE INTO plays (bus, seq, t, item, route, seconds)
SELECT bus, seq, t, COALESCE(CASE WHEN ok THEN json_extract(data, '$.item') END, ''),
       COALESCE(CASE WHEN ok THEN json_extract(data, '$.route') END, ''),
       CASE WHEN ok AND json_type(data, '$.end') IN ('integer', 'real')
            AND json_type(data, '$.start') IN ('integer', 'real')
            THEN json_extract(data, '$.end') - json_extract(data, '$.start') ELSE 0 END
FROM (SELECT bus, seq, t, data, json_valid(data) AS ok FROM events
      WHERE kind = 'play' AND received > :since)
""",
    "postgresql": """
INSERT OR IGNORE INTO plays (bus, seq, t, item, route, seconds)
SELECT bus, seq, t, COALESCE(json_field(data, 'item'), ''),
       COALESCE(json_field(data, 'route'), ''),
       COALESCE(json_number(data, 'end') - json_number(data, 'start'), 0)
FROM events WHERE kind = 'play' AND received > :since AND (kind, received) > ('play', :since)
""",
}
_COPY = _COPY_SQL["sqlite"]
_TOTALS = """
SELECT item, route, bus, COUNT(*), SUM(seconds) FROM plays
WHERE t >= ? AND t < ? GROUP BY item, route, bus ORDER BY item, route, bus
"""


# -- media ------------------------------------------------------------------------------------
def add_media(store: CentralStore, row: dict[str, Any]) -> None:
    """Index a media file (`MEDIA_COLUMNS`); a file known by its hash already is kept."""
    marks = ", ".join("?" * len(MEDIA_COLUMNS))
    sql = f"INSERT OR IGNORE INTO media ({_SELECT}) VALUES ({marks})"  # ON CONFLICT on both
    store.db.execute(sql, [row[c] for c in MEDIA_COLUMNS])


def media_row(store: CentralStore, sha256: str) -> dict[str, Any] | None:
    rows = store.db.query(f"SELECT {_SELECT} FROM media WHERE sha256 = ?", [sha256])
    return next(iter(rows), None)


def media_rows(store: CentralStore) -> list[dict[str, Any]]:
    """Every media file, oldest import first."""
    return list(store.db.query(f"SELECT {_SELECT} FROM media ORDER BY imported"))


def media_prefixed(store: CentralStore, prefix: str) -> list[str]:
    """Hashes starting with `prefix` (lower case hex). Not LIKE: its case rules differ
    between the backends, and a '%' or '_' in `prefix` would be a wildcard."""
    sql = "SELECT sha256 FROM media WHERE substr(sha256, 1, ?) = ?"
    return [str(r[0]) for r in store.db.execute(sql, [len(prefix), prefix])]


def media_named(store: CentralStore, name: str) -> list[str]:
    """Hashes of the media files called `name`."""
    return [str(r[0]) for r in store.db.execute("SELECT sha256 FROM media WHERE name = ?", [name])]


# -- playlists --------------------------------------------------------------------------------
def save_playlist_body(
    store: CentralStore, playlist_id: str, revision: int, body: bytes, updated: float
) -> None:
    """Store a playlist's revision, replacing the one stored before."""
    store.db.execute(
        "INSERT INTO playlists (id, revision, body, updated) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET revision = excluded.revision, body = excluded.body,"
        " updated = excluded.updated",
        [playlist_id, revision, body, updated],
    )


def playlist_body(store: CentralStore, playlist_id: str) -> bytes | None:
    row = store.db.execute("SELECT body FROM playlists WHERE id = ?", [playlist_id]).fetchone()
    return None if row is None else bytes(row[0])


def playlist_bodies(store: CentralStore) -> list[bytes]:
    """Every stored playlist, by id."""
    return [bytes(r[0]) for r in store.db.execute("SELECT body FROM playlists ORDER BY id")]


# -- plays ------------------------------------------------------------------------------------
def copy_plays(store: CentralStore, settle_s: float) -> int:
    """Copy the play events that arrived since the last copy into `plays`; returns how many."""
    conn = store.db.conn
    with store.transaction():
        row = conn.execute("SELECT received FROM report_marks WHERE name = 'plays'").fetchone()
        since = -1.0 if row is None else row[0] - settle_s
        copy = _COPY_SQL[dialect(store)]
        copied = conn.execute(copy, {"since": since}).rowcount  # not total_changes: play_hours' too
        newest = conn.execute("SELECT MAX(received) FROM events WHERE kind = 'play'").fetchone()
        if newest[0] is not None:
            save_report_mark(store, "plays", newest[0])
    return copied


def play_totals(
    store: CentralStore, start: float, end: float
) -> list[tuple[str, str, str, int, float]]:
    """(item, route, bus, plays, seconds on screen) of the plays in [start, end)."""
    rows = store.db.execute(_TOTALS, (start, end)).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows]
