"""Central's schema on PostgreSQL: schema.py's migrations, one script per version, in
PostgreSQL's dialect (tests/test_store_backends.py checks that version N defines the same
tables, columns, keys and indexes on both).

Types: INTEGER -> bigint, REAL -> double precision, TEXT -> text, BLOB -> bytea. SQLite's
`INTEGER PRIMARY KEY` filled in by SQLite is an identity column. A trigger with RAISE(IGNORE)
is a BEFORE INSERT trigger returning NULL (the row is skipped and not counted, as on SQLite);
the json_valid partial indexes use `has_position`, immutable. The version is the one row of
`central_schema` (SQLite: PRAGMA user_version). As in schema.py: a change is a new script
at the end, in both lists.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "VERSION_TABLE"]

VERSION_TABLE = "central_schema"

MIGRATIONS: list[str] = [
    # 1: the foundation
    """
    CREATE TABLE telemetry (
        bus text NOT NULL, seq bigint NOT NULL, t double precision NOT NULL,
        lat double precision, lon double precision, speed double precision,
        track double precision, mode bigint, hdop double precision, sats bigint,
        estimated bigint, speed_kmh double precision, rpm double precision, doors_open bigint,
        coolant_c double precision, fuel_pct double precision, odometer_m double precision,
        backfill bigint NOT NULL, received double precision NOT NULL,
        PRIMARY KEY (bus, seq)
    );
    CREATE INDEX telemetry_t ON telemetry (t);
    CREATE TABLE buses (
        bus text PRIMARY KEY, online bigint NOT NULL, session bigint NOT NULL,
        last_seen double precision, body text
    );
    CREATE TABLE desired (bus text PRIMARY KEY, version bigint NOT NULL, body bytea NOT NULL);
    CREATE TABLE reported (bus text PRIMARY KEY, version bigint NOT NULL, body bytea NOT NULL);
    """,
    # 2: events, alarms and command results; commands sent to buses
    """
    CREATE TABLE events (
        bus text NOT NULL, seq bigint NOT NULL, t double precision NOT NULL, kind text NOT NULL,
        severity bigint NOT NULL, data text NOT NULL, backfill bigint NOT NULL,
        received double precision NOT NULL, PRIMARY KEY (bus, seq)
    );
    CREATE INDEX events_t ON events (t);
    CREATE TABLE commands (
        id text PRIMARY KEY, bus text NOT NULL, name text NOT NULL, args text NOT NULL,
        sent double precision NOT NULL, expires double precision NOT NULL, status text NOT NULL,
        reason text, answered double precision
    );
    CREATE INDEX commands_open ON commands (status, expires);
    """,
    # 3: advertising: the media library, playlists, proof-of-play reports
    """
    CREATE TABLE media (
        sha256 text PRIMARY KEY, name text NOT NULL, mime text NOT NULL, kind text NOT NULL,
        size bigint NOT NULL, imported double precision NOT NULL
    );
    CREATE INDEX media_name ON media (name);
    CREATE TABLE playlists (
        id text PRIMARY KEY, revision bigint NOT NULL, body bytea NOT NULL,
        updated double precision NOT NULL
    );
    CREATE INDEX events_plays ON events (received) WHERE kind = 'play';
    CREATE TABLE plays (
        bus text NOT NULL, seq bigint NOT NULL, t double precision NOT NULL, item text NOT NULL,
        route text NOT NULL, seconds double precision NOT NULL, PRIMARY KEY (bus, seq)
    );
    CREATE INDEX plays_report ON plays (t, item, route, bus, seconds);
    CREATE TABLE report_marks (name text PRIMARY KEY, received double precision NOT NULL);
    """,
    # 4: the imported GTFS timetable and passenger messages
    """
    CREATE TABLE gtfs_feed (
        id bigint PRIMARY KEY CHECK (id = 1), source text NOT NULL,
        imported double precision NOT NULL, summary text NOT NULL
    );
    CREATE TABLE gtfs_agency (
        agency_id text PRIMARY KEY, name text, url text, timezone text, lang text, phone text
    );
    CREATE TABLE gtfs_routes (
        route_id text PRIMARY KEY, agency_id text, short_name text, long_name text,
        type bigint NOT NULL, color text, text_color text
    );
    CREATE TABLE gtfs_stops (
        stop_id text PRIMARY KEY, code text, name text, lat double precision,
        lon double precision, location_type bigint NOT NULL, parent_station text
    );
    CREATE TABLE gtfs_calendar (
        service_id text PRIMARY KEY, days bigint NOT NULL, start_date text NOT NULL,
        end_date text NOT NULL
    );
    CREATE TABLE gtfs_calendar_dates (
        service_id text NOT NULL, date text NOT NULL, exception_type bigint NOT NULL,
        PRIMARY KEY (service_id, date)
    );
    CREATE TABLE gtfs_trips (
        trip_id text PRIMARY KEY, route_id text NOT NULL, service_id text NOT NULL,
        shape_id text, headsign text, direction_id bigint, block_id text
    );
    CREATE INDEX gtfs_trips_route ON gtfs_trips (route_id);
    CREATE INDEX gtfs_trips_block ON gtfs_trips (block_id) WHERE block_id IS NOT NULL;
    CREATE TABLE gtfs_stop_times (
        trip_id text NOT NULL, stop_sequence bigint NOT NULL, stop_id text NOT NULL,
        arrival_s bigint NOT NULL, departure_s bigint NOT NULL, shape_dist double precision,
        PRIMARY KEY (trip_id, stop_sequence)
    );
    CREATE TABLE gtfs_shapes (
        shape_id text NOT NULL, seq bigint NOT NULL, lat double precision NOT NULL,
        lon double precision NOT NULL, dist double precision, PRIMARY KEY (shape_id, seq)
    );
    CREATE TABLE messages (
        id text PRIMARY KEY, created double precision NOT NULL, text_de text NOT NULL,
        text_en text NOT NULL, priority bigint NOT NULL, targets text NOT NULL,
        valid_from double precision, valid_to double precision, status text NOT NULL,
        ended double precision
    );
    CREATE INDEX messages_open ON messages (status, valid_to);
    """,
    # 5: diversions
    """
    CREATE TABLE diversions (
        id text PRIMARY KEY, created double precision NOT NULL, route_id text NOT NULL,
        body bytea NOT NULL, valid_from double precision, valid_to double precision,
        status text NOT NULL, ended double precision
    );
    CREATE INDEX diversions_open ON diversions (status, valid_to);
    """,
    # 6: alarms; one open alarm per bus, kind and subject, even with several ingest workers
    """
    CREATE TABLE alarms (
        id text PRIMARY KEY, bus text NOT NULL, kind text NOT NULL, subject text NOT NULL,
        severity bigint NOT NULL, state text NOT NULL, raised_t double precision NOT NULL,
        t double precision NOT NULL, body text NOT NULL, retained bigint NOT NULL
    );
    CREATE UNIQUE INDEX alarms_open ON alarms (bus, kind, subject) WHERE state != 'closed';
    CREATE INDEX alarms_raised ON alarms (raised_t);
    CREATE INDEX alarms_retained ON alarms (t) WHERE retained = 1;
    """,
    # 7: timetable versions, publications, the version each bus was given; groups of buses
    """
    CREATE TABLE timetable_versions (
        version bigint PRIMARY KEY, imported double precision NOT NULL, source text NOT NULL,
        summary text NOT NULL, sha256 text NOT NULL, size bigint NOT NULL
    );
    CREATE TABLE timetable_items (
        version bigint NOT NULL, kind text NOT NULL, id text NOT NULL,
        fingerprint text NOT NULL, route_id text, block_id text,
        PRIMARY KEY (version, kind, id)
    );
    CREATE INDEX timetable_items_block ON timetable_items (version, block_id)
        WHERE block_id IS NOT NULL;
    CREATE TABLE timetable_publications (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, version bigint NOT NULL,
        targets text NOT NULL, ref bytea NOT NULL, published double precision NOT NULL,
        by text NOT NULL
    );
    CREATE TABLE bus_timetables (
        bus text PRIMARY KEY, version bigint NOT NULL, publication bigint NOT NULL
    );
    CREATE TABLE bus_groups (name text PRIMARY KEY, updated double precision NOT NULL);
    CREATE TABLE bus_group_members (
        name text NOT NULL, bus text NOT NULL, PRIMARY KEY (name, bus)
    );
    CREATE INDEX bus_group_members_bus ON bus_group_members (bus);
    """,
    # 8: retention (schema.py has the why). A purged record that comes again is skipped by
    # a BEFORE INSERT trigger returning NULL (SQLite: RAISE(IGNORE)).
    """
    CREATE FUNCTION has_position(doc text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE AS $$
    BEGIN
        RETURN jsonb_typeof(doc::jsonb) = 'object' AND (doc::jsonb ? 'lat' OR doc::jsonb ? 'lon');
    EXCEPTION WHEN others THEN
        RETURN false;  -- no JSON: never an error, only not found (SQLite: json_valid)
    END $$;
    CREATE INDEX telemetry_positions ON telemetry (t) WHERE lat IS NOT NULL;
    CREATE INDEX events_kind_t ON events (kind, t);
    CREATE INDEX events_positions ON events (t) WHERE has_position(data);
    CREATE INDEX alarms_positions ON alarms (t) WHERE state = 'closed' AND has_position(body);
    CREATE TABLE retention_marks (
        tbl text NOT NULL, bus text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (tbl, bus)
    );
    CREATE FUNCTION telemetry_purged() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.seq <= (
            SELECT seq FROM retention_marks WHERE tbl = 'telemetry' AND bus = NEW.bus
        ) THEN
            RETURN NULL;
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER telemetry_purged BEFORE INSERT ON telemetry
        FOR EACH ROW EXECUTE FUNCTION telemetry_purged();
    CREATE FUNCTION events_purged() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.seq <= (
            SELECT seq FROM retention_marks WHERE bus = NEW.bus AND tbl = CASE NEW.kind
                WHEN 'play' THEN 'plays' WHEN 'passenger_feedback' THEN 'feedback'
                WHEN 'portal_stats' THEN 'portal_stats' ELSE 'events' END
        ) THEN
            RETURN NULL;
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER events_purged BEFORE INSERT ON events
        FOR EACH ROW EXECUTE FUNCTION events_purged();
    """,
    # 9: reports at a month of a fleet (schema.py has the why): plays by kind and arrival, plays
    # per hour kept by triggers, departures (route, delay) copied for punctuality.
    """
    CREATE FUNCTION json_field(doc text, key text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $$
    BEGIN
        RETURN doc::jsonb ->> key;
    EXCEPTION WHEN others THEN
        RETURN NULL;  -- no JSON or no object: not found (SQLite: json_valid)
    END $$;
    CREATE FUNCTION json_number(doc text, key text) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE AS $$
    BEGIN
        IF jsonb_typeof(doc::jsonb -> key) <> 'number' THEN
            RETURN NULL;  -- text that looks like a number is none ("NaN", "1e999")
        END IF;
        RETURN (doc::jsonb ->> key)::double precision;
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END $$;
    DROP INDEX events_plays;
    CREATE INDEX events_plays ON events (kind, received) WHERE kind = 'play';
    CREATE TABLE play_hours (
        hour bigint NOT NULL, item text NOT NULL, route text NOT NULL, bus text NOT NULL,
        plays bigint NOT NULL, seconds double precision NOT NULL,
        PRIMARY KEY (hour, item, route, bus)
    );
    INSERT INTO play_hours (hour, item, route, bus, plays, seconds)
    SELECT trunc(t / 3600)::bigint, item, route, bus, COUNT(*), SUM(seconds) FROM plays
    GROUP BY 1, 2, 3, 4;
    CREATE FUNCTION plays_hour_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO play_hours (hour, item, route, bus, plays, seconds)
        VALUES (trunc(NEW.t / 3600)::bigint, NEW.item, NEW.route, NEW.bus, 1, NEW.seconds)
        ON CONFLICT (hour, item, route, bus) DO UPDATE
        SET plays = play_hours.plays + 1, seconds = play_hours.seconds + excluded.seconds;
        RETURN NULL;
    END $$;
    CREATE TRIGGER plays_hour_added AFTER INSERT ON plays
        FOR EACH ROW EXECUTE FUNCTION plays_hour_added();
    CREATE FUNCTION plays_hour_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE play_hours SET plays = plays - 1, seconds = seconds - OLD.seconds
        WHERE hour = trunc(OLD.t / 3600)::bigint AND item = OLD.item AND route = OLD.route
            AND bus = OLD.bus;
        DELETE FROM play_hours WHERE hour = trunc(OLD.t / 3600)::bigint AND item = OLD.item
            AND route = OLD.route AND bus = OLD.bus AND plays <= 0;
        RETURN NULL;
    END $$;
    CREATE TRIGGER plays_hour_removed AFTER DELETE ON plays
        FOR EACH ROW EXECUTE FUNCTION plays_hour_removed();
    CREATE INDEX events_departed ON events (kind, received) WHERE kind = 'departed';
    CREATE TABLE departures (
        bus text NOT NULL, seq bigint NOT NULL, t double precision NOT NULL, route text,
        delay_s double precision, PRIMARY KEY (bus, seq)
    );
    INSERT INTO departures (bus, seq, t, route, delay_s)
    SELECT bus, seq, t, json_field(data, 'route'), json_number(data, 'delay_s')
    FROM events WHERE kind = 'departed';
    INSERT INTO report_marks (name, received)
    SELECT 'departures', MAX(received) FROM events WHERE kind = 'departed' HAVING COUNT(*) > 0;
    CREATE INDEX departures_delays ON departures (route, delay_s, t);
    CREATE FUNCTION events_departed_purged() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM departures WHERE bus = OLD.bus AND seq = OLD.seq;
        RETURN NULL;
    END $$;
    CREATE TRIGGER events_departed_purged AFTER DELETE ON events
        FOR EACH ROW WHEN (OLD.kind = 'departed') EXECUTE FUNCTION events_departed_purged();
    """,
    # 10: leases (central/store/lease.py): which instance of a group holds the live role.
    """
    CREATE TABLE leases (
        name text PRIMARY KEY, holder text NOT NULL, expires double precision NOT NULL
    );
    """,
    # 11: software rollouts (central/rollouts.py, issue 16)
    """
    CREATE TABLE rollouts (
        id text PRIMARY KEY, version text NOT NULL, targets text NOT NULL, waves text NOT NULL,
        halt_on bigint NOT NULL, state text NOT NULL, created double precision NOT NULL,
        by text NOT NULL, halted_reason text NOT NULL, ended double precision, alarm_bus text
    );
    CREATE INDEX rollouts_state ON rollouts (state);
    CREATE TABLE rollout_buses (
        rollout text NOT NULL, bus text NOT NULL, wave bigint NOT NULL, state text NOT NULL,
        since double precision NOT NULL, detail text NOT NULL, desired bigint NOT NULL,
        PRIMARY KEY (rollout, bus)
    );
    CREATE INDEX rollout_buses_bus ON rollout_buses (bus);
    """,
    # 12: people and the audit log (issue 18)
    """
    CREATE TABLE people (
        name text PRIMARY KEY, role text NOT NULL, created double precision NOT NULL,
        by text NOT NULL
    );
    CREATE TABLE audit (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, t double precision NOT NULL,
        account text NOT NULL, role text NOT NULL, request text NOT NULL, summary text NOT NULL,
        ok bigint NOT NULL, answer text NOT NULL
    );
    CREATE INDEX audit_t ON audit (t);
    CREATE INDEX audit_account ON audit (account, t);
    """,
    # 13: alarm notifications (central/notify/, central/store/notify.py; issue 18)
    """
    CREATE TABLE notify_deliveries (
        id text PRIMARY KEY, alarm text NOT NULL, rule text NOT NULL, purpose text NOT NULL,
        channel text NOT NULL, target text NOT NULL, state text NOT NULL,
        attempts bigint NOT NULL, created double precision NOT NULL,
        due double precision NOT NULL, sent double precision, error text NOT NULL
    );
    CREATE INDEX notify_deliveries_alarm ON notify_deliveries (alarm);
    CREATE INDEX notify_deliveries_state ON notify_deliveries (state, due);
    """,
]
