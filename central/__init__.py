"""central: city hall. One service owns the database and the broker connection; everyone else asks.

The rules of this room:
- `store/` holds every SQL statement of central (tests/test_import_rules.py fails on SQL text or
  a direct execute call anywhere else in central/). The service opens the database once.
- The service (`service/`) is the only writer and the only publisher of desired state, alarms and
  fleet entries: the dashboard and every CLI tool send it typed requests (protocols/requests.py)
  through `client.py` and show its answer. A tool that finds no running central exits 2.
- `fleet/` is pure (rules from events to state: no SQL, no MQTT); the feature modules at the
  top (assign, messages, playlists, diversions, media, gtfs_import, reports, driver) are the
  things a dispatcher names: their rules, and calls into `store/`.
- `mqtt.py` builds every MQTT client of central and owns its one backoff policy; `errors.py` is the
  one exception tree (a dispatcher's mistake is `Refused`, ours is `CentralFault`).
- central imports `protocols`, never `onboard`, `hw_sim` or `busfleet`.

    store/       connection, migrations, one module of SQL per concern
    fleet/       fleet state and alarm rules, pure
    service/     the running process: ingest, alarm center, dispatch, sync, serve
    http/        GTFS-Realtime, media, health (aiohttp)
    dashboard/   the dispatcher's Textual app
"""
