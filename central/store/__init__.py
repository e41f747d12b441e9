"""central/store: the one owner of central's database, and the only place with SQL.

Rules of the room:

- Every SQL statement of central lives here. Feature modules (central/messages.py,
  diversions.py, media.py, ...) keep their rules and call these functions; a test fails on
  `.execute(` or SQL text anywhere else in central/.
- One connection per process (`CentralStore`, opened where the process starts and handed to
  its parts; work on another thread takes `store.for_thread()`), one transaction helper
  (`store.transaction()`, tx.py): BEGIN IMMEDIATE, nested use joins the open transaction,
  so the ingest's group commit and a feature's read-modify-write compose.
- Rows go in and out as plain values (tuples, dicts keyed by column); the feature modules turn
  them into their types. Statements are built from column lists, not re-listed by hand;
  sqlite-utils (`Table.insert`, `upsert`, `rows_where`) where a statement is plain, raw
  `executemany` where speed matters (the ingest path, GTFS import).
- Submodules import their siblings directly, never this face (no import circles).

What each module owns:

    db          CentralStore: the connection, pragmas, migrations; its methods come from
    telemetry   telemetry, events, commands (the ingest's hot path)
    desired     fleet entries (`buses`), desired and reported documents
    tx          the transaction helper
    schema      the migrations, one script per schema version
    messages    passenger messages          diversions   diversions
    alarms      alarms                      ads          media index, playlists, plays
    gtfs        reading the timetable       gtfs_load    replacing it with an imported feed
    queries     read-only views over many tables: bus detail, lists, reports, driver log,
                journey events
    retention   what each kind keeps past its days, purged in small transactions; the
                per-bus marks that keep a purged record from being stored again

SQLite today; the functions take the store, not a connection, so that another database
(PostgreSQL, for several central instances) can come behind the same API.
"""

from central.store.db import CentralStore
from central.store.gtfs import FeedInfo, TripInfo
from central.store.telemetry import EVENT_COLUMNS, TELEMETRY_COLUMNS, record_row
from central.store.tx import transaction

__all__ = [
    "EVENT_COLUMNS",
    "TELEMETRY_COLUMNS",
    "CentralStore",
    "FeedInfo",
    "TripInfo",
    "record_row",
    "transaction",
]
