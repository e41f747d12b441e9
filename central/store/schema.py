"""Central's schema: one SQL script per version, applied in order by `CentralStore`.

`PRAGMA user_version` says how many have run. A change to the schema is a new script at the
end, never an edit of an old one: databases in the field have run the old ones already.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

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
    # 6: alarms (central/service/alarm_center.py); body is the Alarm as published to dashboards; one
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
    # 7: timetable versions (central/timetables.py): one row per imported feed, with the
    # package's hash; per version the ids a check or a diff needs (route, stop, trip) with a
    # fingerprint of each, not a second copy of its stop times; publications (what was sent
    # to whom, the ref as sent) and the version each bus was given; named groups of buses
    # (central/groups.py)
    """
    CREATE TABLE timetable_versions (
        version INTEGER PRIMARY KEY, imported REAL NOT NULL, source TEXT NOT NULL,
        summary TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL
    );
    CREATE TABLE timetable_items (
        version INTEGER NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
        fingerprint TEXT NOT NULL, route_id TEXT, block_id TEXT,
        PRIMARY KEY (version, kind, id)
    ) WITHOUT ROWID;
    CREATE INDEX timetable_items_block ON timetable_items (version, block_id)
        WHERE block_id IS NOT NULL;
    CREATE TABLE timetable_publications (
        id INTEGER PRIMARY KEY, version INTEGER NOT NULL, targets TEXT NOT NULL,
        ref BLOB NOT NULL, published REAL NOT NULL, by TEXT NOT NULL
    );
    CREATE TABLE bus_timetables (
        bus TEXT PRIMARY KEY, version INTEGER NOT NULL, publication INTEGER NOT NULL
    );
    CREATE TABLE bus_groups (name TEXT PRIMARY KEY, updated REAL NOT NULL);
    CREATE TABLE bus_group_members (
        name TEXT NOT NULL, bus TEXT NOT NULL, PRIMARY KEY (name, bus)
    ) WITHOUT ROWID;
    CREATE INDEX bus_group_members_bus ON bus_group_members (bus);
    """,
    # 8: retention (central/store/retention.py). Positions are cleared before the rows go:
    # from telemetry rows, from the data of events (`play`, `gps_lost`, a driver's message)
    # and from the documents of closed alarms; partial indexes find those still holding one
    # (json_valid first: a row that is no JSON is never an error, only not found). Events are
    # purged per kind. Per bus and retention kind (telemetry; events, plays, feedback,
    # portal_stats: the CASE below is central/store/retention.py's `_EVENT_KINDS`), the
    # highest sequence number purged: a record of that kind at or below it that comes again
    # (a lost receipt, a `resend` command) is ignored like any duplicate, so a purged record
    # is never stored twice, and a late record of another kind is still stored.
    # (PostgreSQL: the same as a BEFORE INSERT trigger function that returns NULL.)
    """
    CREATE INDEX telemetry_positions ON telemetry (t) WHERE lat IS NOT NULL;
    CREATE INDEX events_kind_t ON events (kind, t);
    CREATE INDEX events_positions ON events (t) WHERE json_valid(data)
        AND (json_type(data, '$.lat') IS NOT NULL OR json_type(data, '$.lon') IS NOT NULL);
    CREATE INDEX alarms_positions ON alarms (t) WHERE state = 'closed' AND json_valid(body)
        AND (json_type(body, '$.lat') IS NOT NULL OR json_type(body, '$.lon') IS NOT NULL);
    CREATE TABLE retention_marks (
        tbl TEXT NOT NULL, bus TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (tbl, bus)
    ) WITHOUT ROWID;
    CREATE TRIGGER telemetry_purged BEFORE INSERT ON telemetry
    WHEN NEW.seq <= (SELECT seq FROM retention_marks WHERE tbl = 'telemetry' AND bus = NEW.bus)
    BEGIN SELECT RAISE(IGNORE); END;
    CREATE TRIGGER events_purged BEFORE INSERT ON events
    WHEN NEW.seq <= (
        SELECT seq FROM retention_marks WHERE bus = NEW.bus AND tbl = CASE NEW.kind
            WHEN 'play' THEN 'plays' WHEN 'passenger_feedback' THEN 'feedback'
            WHEN 'portal_stats' THEN 'portal_stats' ELSE 'events' END
    )
    BEGIN SELECT RAISE(IGNORE); END;
    """,
    # 9: reports at a month of a fleet (bench/reports_month.py). The plays copy asks for
    # `kind = 'play' AND received > ?`: since migration 8's events_kind_t (kind, t) the planner
    # took that index and read every play ever stored at each report; events_plays now leads
    # with kind too, so the copy reads only the new plays. play_hours: the plays per hour (UTC,
    # `hour` = unix time // 3600), item, route and bus, kept by triggers on `plays` (the copy
    # inserts, retention deletes): a month's proof of play reads ~700,000 of these instead of
    # 7 M plays (central/reports.py uses them for days that begin and end on a whole hour).
    # departures: each `departed` event's route and delay (NULLs for data that is no JSON),
    # copied like the plays (events_departed finds the new ones by arrival; the mark is in
    # report_marks; the rows so far are copied here), deleted with their events by a trigger:
    # punctuality reads one narrow covering index, not a month's event JSON row by row.
    """
    DROP INDEX events_plays;
    CREATE INDEX events_plays ON events (kind, received) WHERE kind = 'play';
    CREATE TABLE play_hours (
        hour INTEGER NOT NULL, item TEXT NOT NULL, route TEXT NOT NULL, bus TEXT NOT NULL,
        plays INTEGER NOT NULL, seconds REAL NOT NULL, PRIMARY KEY (hour, item, route, bus)
    ) WITHOUT ROWID;
    INSERT INTO play_hours (hour, item, route, bus, plays, seconds)
    SELECT CAST(t / 3600 AS INTEGER), item, route, bus, COUNT(*), SUM(seconds) FROM plays
    GROUP BY 1, 2, 3, 4;
    CREATE TRIGGER plays_hour_added AFTER INSERT ON plays
    BEGIN
        INSERT INTO play_hours (hour, item, route, bus, plays, seconds)
        VALUES (CAST(NEW.t / 3600 AS INTEGER), NEW.item, NEW.route, NEW.bus, 1, NEW.seconds)
        ON CONFLICT (hour, item, route, bus)
        DO UPDATE SET plays = plays + 1, seconds = seconds + excluded.seconds;
    END;
    CREATE TRIGGER plays_hour_removed AFTER DELETE ON plays
    BEGIN
        UPDATE play_hours SET plays = plays - 1, seconds = seconds - OLD.seconds
        WHERE hour = CAST(OLD.t / 3600 AS INTEGER) AND item = OLD.item AND route = OLD.route
            AND bus = OLD.bus;
        DELETE FROM play_hours WHERE hour = CAST(OLD.t / 3600 AS INTEGER) AND item = OLD.item
            AND route = OLD.route AND bus = OLD.bus AND plays <= 0;
    END;
    CREATE INDEX events_departed ON events (kind, received) WHERE kind = 'departed';
    CREATE TABLE departures (
        bus TEXT NOT NULL, seq INTEGER NOT NULL, t REAL NOT NULL, route TEXT, delay_s REAL,
        PRIMARY KEY (bus, seq)
    ) WITHOUT ROWID;
    INSERT INTO departures (bus, seq, t, route, delay_s)
    SELECT bus, seq, t, CASE WHEN json_valid(data) THEN json_extract(data, '$.route') END,
        CASE WHEN json_valid(data) THEN CASE WHEN json_type(data, '$.delay_s')
            IN ('integer', 'real') THEN json_extract(data, '$.delay_s') END END
    FROM events WHERE kind = 'departed';
    INSERT INTO report_marks (name, received)
    SELECT 'departures', MAX(received) FROM events WHERE kind = 'departed' HAVING COUNT(*) > 0;
    CREATE INDEX departures_delays ON departures (route, delay_s, t);
    CREATE TRIGGER events_departed_purged AFTER DELETE ON events WHEN OLD.kind = 'departed'
    BEGIN
        DELETE FROM departures WHERE bus = OLD.bus AND seq = OLD.seq;
    END;
    """,
    # 10: leases (central/store/lease.py): which instance of a group holds the live role.
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL
    );
    """,
    # 11: software rollouts (central/rollouts.py, issue 16): a rollout of a release version to
    # buses in waves (`waves`: each wave's size, JSON), halted when failures reach `halt_on`;
    # `alarm_bus`: the bus its rollout_halted alarm is raised on. Per bus of a rollout its wave
    # (0-based), where it stands (pending, assigned, updated, failed, refused) since when, why,
    # and the desired document version that first carried the release (0: not yet assigned).
    """
    CREATE TABLE rollouts (
        id TEXT PRIMARY KEY, version TEXT NOT NULL, targets TEXT NOT NULL, waves TEXT NOT NULL,
        halt_on INTEGER NOT NULL, state TEXT NOT NULL, created REAL NOT NULL, by TEXT NOT NULL,
        halted_reason TEXT NOT NULL, ended REAL, alarm_bus TEXT
    );
    CREATE INDEX rollouts_state ON rollouts (state);
    CREATE TABLE rollout_buses (
        rollout TEXT NOT NULL, bus TEXT NOT NULL, wave INTEGER NOT NULL, state TEXT NOT NULL,
        since REAL NOT NULL, detail TEXT NOT NULL, desired INTEGER NOT NULL,
        PRIMARY KEY (rollout, bus)
    ) WITHOUT ROWID;
    CREATE INDEX rollout_buses_bus ON rollout_buses (bus);
    """,
    # 12: people and the audit log (issue 18, central/roles.py, central/store/audit.py): each
    # account's role at central (since when, recorded by whom), and per request central
    # answered (every change, every refusal) who asked as which role, when, what, the answer.
    """
    CREATE TABLE people (
        name TEXT PRIMARY KEY, role TEXT NOT NULL, created REAL NOT NULL, by TEXT NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY, t REAL NOT NULL, account TEXT NOT NULL, role TEXT NOT NULL,
        request TEXT NOT NULL, summary TEXT NOT NULL, ok INTEGER NOT NULL, answer TEXT NOT NULL
    );
    CREATE INDEX audit_t ON audit (t);
    CREATE INDEX audit_account ON audit (account, t);
    """,
    # 13: alarm notifications (central/notify/, central/store/notify.py; issue 18): one row per
    # delivery of an alarm to one e-mail address or webhook: why (`purpose`: alarm, escalation),
    # where it stands (pending, held for quiet hours, sent, failed), its attempts and last error.
    """
    CREATE TABLE notify_deliveries (
        id TEXT PRIMARY KEY, alarm TEXT NOT NULL, rule TEXT NOT NULL, purpose TEXT NOT NULL,
        channel TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL,
        attempts INTEGER NOT NULL, created REAL NOT NULL, due REAL NOT NULL, sent REAL,
        error TEXT NOT NULL
    );
    CREATE INDEX notify_deliveries_alarm ON notify_deliveries (alarm);
    CREATE INDEX notify_deliveries_state ON notify_deliveries (state, due);
    """,
]
