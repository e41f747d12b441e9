"""Central's SQLite store (sqlite-utils, WAL): fleet history and state, migrations in code.

Telemetry is keyed on (bus, seq): a record the bus sends twice (after an outage, a crash, a
lost PUBACK) is stored once. `add_records` says how many were new.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from protocols.schemas import TelemetryRecord

TELEMETRY_COLUMNS = (
    "bus",
    "seq",
    "t",
    "lat",
    "lon",
    "speed",
    "track",
    "mode",
    "hdop",
    "sats",
    "estimated",
    "speed_kmh",
    "rpm",
    "doors_open",
    "coolant_c",
    "fuel_pct",
    "odometer_m",
    "backfill",
    "received",
)

MIGRATIONS: list[str] = [
    # 1: the foundation
    """
    CREATE TABLE telemetry (
        bus TEXT NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL,
        lat REAL, lon REAL, speed REAL, track REAL, mode INTEGER, hdop REAL, sats INTEGER,
        estimated INTEGER, speed_kmh REAL, rpm REAL, doors_open INTEGER, coolant_c REAL,
        fuel_pct REAL, odometer_m REAL, backfill INTEGER NOT NULL, received REAL NOT NULL,
        PRIMARY KEY (bus, seq)
    ) WITHOUT ROWID;
    CREATE INDEX telemetry_t ON telemetry (t);
    CREATE TABLE buses (
        bus TEXT PRIMARY KEY, online INTEGER NOT NULL, session INTEGER NOT NULL,
        last_seen REAL, body TEXT
    );
    CREATE TABLE desired (bus TEXT PRIMARY KEY, version INTEGER NOT NULL, body BLOB NOT NULL);
    CREATE TABLE reported (bus TEXT PRIMARY KEY, version INTEGER NOT NULL, body BLOB NOT NULL);
    """,
    # 2: events, alarms and command results; commands sent to buses
    """
    CREATE TABLE events (
        bus TEXT NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL, kind TEXT NOT NULL,
        severity INTEGER NOT NULL, data TEXT NOT NULL, backfill INTEGER NOT NULL,
        received REAL NOT NULL, PRIMARY KEY (bus, seq)
    ) WITHOUT ROWID;
    CREATE INDEX events_t ON events (t);
    CREATE TABLE commands (
        id TEXT PRIMARY KEY, bus TEXT NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL,
        sent REAL NOT NULL, expires REAL NOT NULL, status TEXT NOT NULL,
        reason TEXT, answered REAL
    );
    CREATE INDEX commands_open ON commands (status, expires);
    """,
    # 3: advertising: the media library, playlists, proof-of-play reports (central/media.py)
    """
    CREATE TABLE media (
        sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, mime TEXT NOT NULL, kind TEXT NOT NULL,
        size INTEGER NOT NULL, imported REAL NOT NULL
    );
    CREATE INDEX media_name ON media (name);
    CREATE TABLE playlists (
        id TEXT PRIMARY KEY, revision INTEGER NOT NULL, body BLOB NOT NULL, updated REAL NOT NULL
    );
    CREATE INDEX events_plays ON events (received) WHERE kind = 'play';
    CREATE TABLE plays (
        bus TEXT NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL, item TEXT NOT NULL,
        route TEXT NOT NULL, seconds REAL NOT NULL, PRIMARY KEY (bus, seq)
    ) WITHOUT ROWID;
    CREATE INDEX plays_report ON plays (t, item, route, bus, seconds);
    CREATE TABLE report_marks (name TEXT PRIMARY KEY, received REAL NOT NULL);
    """,
    # 4: the imported GTFS timetable (central/gtfs_import.py: replaced whole on each import)
    # and passenger messages (central/messages.py)
    """
    CREATE TABLE gtfs_feed (
        id INTEGER PRIMARY KEY CHECK (id = 1), source TEXT NOT NULL, imported REAL NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE TABLE gtfs_agency (
        agency_id TEXT PRIMARY KEY, name TEXT, url TEXT, timezone TEXT, lang TEXT, phone TEXT
    );
    CREATE TABLE gtfs_routes (
        route_id TEXT PRIMARY KEY, agency_id TEXT, short_name TEXT, long_name TEXT,
        type INTEGER NOT NULL, color TEXT, text_color TEXT
    );
    CREATE TABLE gtfs_stops (
        stop_id TEXT PRIMARY KEY, code TEXT, name TEXT, lat REAL, lon REAL,
        location_type INTEGER NOT NULL, parent_station TEXT
    );
    CREATE TABLE gtfs_calendar (
        service_id TEXT PRIMARY KEY, days INTEGER NOT NULL, start_date TEXT NOT NULL,
        end_date TEXT NOT NULL
    );
    CREATE TABLE gtfs_calendar_dates (
        service_id TEXT NOT NULL, date TEXT NOT NULL, exception_type INTEGER NOT NULL,
        PRIMARY KEY (service_id, date)
    ) WITHOUT ROWID;
    CREATE TABLE gtfs_trips (
        trip_id TEXT PRIMARY KEY, route_id TEXT NOT NULL, service_id TEXT NOT NULL,
        shape_id TEXT, headsign TEXT, direction_id INTEGER, block_id TEXT
    );
    CREATE INDEX gtfs_trips_route ON gtfs_trips (route_id);
    CREATE INDEX gtfs_trips_block ON gtfs_trips (block_id) WHERE block_id IS NOT NULL;
    CREATE TABLE gtfs_stop_times (
        trip_id TEXT NOT NULL, stop_sequence INTEGER NOT NULL, stop_id TEXT NOT NULL,
        arrival_s INTEGER NOT NULL, departure_s INTEGER NOT NULL, shape_dist REAL,
        PRIMARY KEY (trip_id, stop_sequence)
    ) WITHOUT ROWID;
    CREATE TABLE gtfs_shapes (
        shape_id TEXT NOT NULL, seq INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
        dist REAL, PRIMARY KEY (shape_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        id TEXT PRIMARY KEY, created REAL NOT NULL, text_de TEXT NOT NULL,
        text_en TEXT NOT NULL, priority INTEGER NOT NULL, targets TEXT NOT NULL,
        valid_from REAL, valid_to REAL, status TEXT NOT NULL, ended REAL
    );
    CREATE INDEX messages_open ON messages (status, valid_to);
    """,
    # 5: diversions (central/diversions.py); body is the Diversion as sent to the buses
    """
    CREATE TABLE diversions (
        id TEXT PRIMARY KEY, created REAL NOT NULL, route_id TEXT NOT NULL, body BLOB NOT NULL,
        valid_from REAL, valid_to REAL, status TEXT NOT NULL, ended REAL
    );
    CREATE INDEX diversions_open ON diversions (status, valid_to);
    """,
    # 6: alarms (central/alarm_center.py); body is the Alarm as published to dashboards; one
    # open alarm per bus, kind and subject, even with several ingest workers
    """
    CREATE TABLE alarms (
        id TEXT PRIMARY KEY, bus TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
        severity INTEGER NOT NULL, state TEXT NOT NULL, raised_t REAL NOT NULL, t REAL NOT NULL,
        body TEXT NOT NULL, retained INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX alarms_open ON alarms (bus, kind, subject) WHERE state != 'closed';
    CREATE INDEX alarms_raised ON alarms (raised_t);
    CREATE INDEX alarms_retained ON alarms (t) WHERE retained = 1;
    """,
]


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode otherwise).

    Inside an open transaction this is part of it: `CentralStore.batch` groups many writes.
    """
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def record_row(bus: str, rec: TelemetryRecord, backfill: bool, received: float) -> tuple[Any, ...]:
    p, v = rec.pos, rec.veh
    return (
        bus,
        rec.seq,
        rec.t,
        p.lat if p else None,
        p.lon if p else None,
        p.speed if p else None,
        p.track if p else None,
        p.mode if p else None,
        p.hdop if p else None,
        p.sats if p else None,
        int(p.estimated) if p else None,
        v.speed_kmh if v else None,
        v.rpm if v else None,
        None if v is None or v.doors_open is None else int(v.doors_open),
        v.coolant_c if v else None,
        v.fuel_pct if v else None,
        v.odometer_m if v else None,
        int(backfill),
        received,
    )


class CentralStore:
    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        marks = ",".join("?" * len(TELEMETRY_COLUMNS))
        self._insert = (
            f"INSERT OR IGNORE INTO telemetry ({','.join(TELEMETRY_COLUMNS)}) VALUES ({marks})"
        )

    def _migrate(self) -> None:
        """Bring the schema up to date; safe when several workers start at once."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others wait, then see it
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """One transaction around many writes: a commit costs far more than a row (group commit)."""
        return transaction(self.db.conn)

    def add_records(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert telemetry rows; duplicates (same bus and seq) are ignored. Returns new rows."""
        conn = self.db.conn
        before = conn.total_changes
        with transaction(conn):
            conn.executemany(self._insert, rows)
        return conn.total_changes - before

    def add_events(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert event rows (bus, seq, t, kind, severity, data, backfill, received)."""
        conn = self.db.conn
        before = conn.total_changes
        with transaction(conn):
            conn.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return conn.total_changes - before

    def add_command(
        self, cmd_id: str, bus: str, name: str, args: str, sent: float, expires: float
    ) -> None:
        self.db.execute(
            "INSERT INTO commands (id, bus, name, args, sent, expires, status)"
            " VALUES (?, ?, ?, ?, ?, ?, 'sent')",
            (cmd_id, bus, name, args, sent, expires),
        )

    def answer_command(self, cmd_id: str, status: str, reason: str | None, t: float) -> bool:
        """Record a command's result; only the first answer counts."""
        cur = self.db.execute(
            "UPDATE commands SET status = ?, reason = ?, answered = ?"
            " WHERE id = ? AND status = 'sent'",
            (status, reason, t, cmd_id),
        )
        return cur.rowcount > 0

    def expire_commands(self, now: float) -> int:
        cur = self.db.execute(
            "UPDATE commands SET status = 'expired', reason = 'no answer before expiry',"
            " answered = ? WHERE status = 'sent' AND expires < ?",
            (now, now),
        )
        return cur.rowcount

    def commands(self, bus: str | None = None) -> list[dict[str, Any]]:
        if bus is None:
            return list(self.db.query("SELECT * FROM commands ORDER BY sent"))
        return list(self.db.query("SELECT * FROM commands WHERE bus = ? ORDER BY sent", [bus]))

    def all_desired(self) -> list[tuple[str, bytes]]:
        return [(r[0], bytes(r[1])) for r in self.db.execute("SELECT bus, body FROM desired")]

    def telemetry(self, bus: str | None = None) -> list[dict[str, Any]]:
        if bus is None:
            return list(self.db.query("SELECT * FROM telemetry ORDER BY bus, seq"))
        return list(self.db.query("SELECT * FROM telemetry WHERE bus = ? ORDER BY seq", [bus]))

    def seqs(self, bus: str) -> list[int]:
        return [
            r[0]
            for r in self.db.execute("SELECT seq FROM telemetry WHERE bus = ? ORDER BY seq", [bus])
        ]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])

    def save_bus(
        self, bus: str, online: bool, session: int, last_seen: float | None, body: str
    ) -> None:
        self.db.execute(
            "INSERT INTO buses (bus, online, session, last_seen, body) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(bus) DO UPDATE SET online = excluded.online, session = excluded.session,"
            " last_seen = excluded.last_seen, body = excluded.body",
            (bus, int(online), session, last_seen, body),
        )

    def save_buses(self, rows: Iterable[tuple[str, bool, int, float | None, str]]) -> None:
        """`save_bus` for many buses in one transaction: (bus, online, session, last_seen, body)."""
        with transaction(self.db.conn):
            self.db.conn.executemany(
                "INSERT INTO buses (bus, online, session, last_seen, body) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(bus) DO UPDATE SET online = excluded.online,"
                " session = excluded.session, last_seen = excluded.last_seen, body = excluded.body",
                ((b, int(on), s, seen, body) for b, on, s, seen, body in rows),
            )

    def buses(self) -> Iterable[dict[str, Any]]:
        return self.db.query("SELECT * FROM buses ORDER BY bus")

    def put_desired(self, bus: str, body_for_version: Any) -> int:
        """Store the next desired document of `bus`; `body_for_version(v)` builds it. Returns v."""
        row = self.db.execute("SELECT version FROM desired WHERE bus = ?", [bus]).fetchone()
        version = (row[0] if row else 0) + 1
        body: bytes = body_for_version(version)
        self.db.execute(
            "INSERT INTO desired (bus, version, body) VALUES (?, ?, ?)"
            " ON CONFLICT(bus) DO UPDATE SET version = excluded.version, body = excluded.body",
            (bus, version, body),
        )
        return version

    def desired(self, bus: str) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT version, body FROM desired WHERE bus = ?", [bus]).fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def save_reported(self, bus: str, version: int, body: bytes) -> None:
        self.db.execute(
            "INSERT INTO reported (bus, version, body) VALUES (?, ?, ?)"
            " ON CONFLICT(bus) DO UPDATE SET version = excluded.version, body = excluded.body",
            (bus, version, body),
        )

    def close(self) -> None:
        self.db.conn.close()
