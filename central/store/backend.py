"""Which database central runs on, and how both backends share one store API (issue 15).

The database setting (`--db`, `db = ...` in central.toml) is a SQLite file path (the default,
zero-install) or a PostgreSQL URL, `postgresql://user@host:port/dbname` (`is_postgres_url`).

Design
------

The rest of central sees one API: `CentralStore` and the functions of central/store/*.py that
take it. Below that API the store modules speak one SQL dialect, SQLite's, through a small
connection interface, the subset of sqlite-utils and sqlite3 they use:

    store.db.execute(sql, params) -> cursor (fetchone, fetchall, iteration, rowcount)
    store.db.query(sql, params)   -> dict rows
    store.db.conn.execute / executemany / in_transaction / total_changes
    store.transaction()           -> one write transaction; nested use joins it

On SQLite that is sqlite-utils' `Database` and its sqlite3 connection, unchanged. On
PostgreSQL, `PgCentralStore` (pg_store.py) is a `CentralStore` whose `db` is `PgDatabase`
(pg_db.py): the same calls over one psycopg 3 connection. Every statement goes through ONE
translation (pg_sql.py `translate`): `?` and `:name` placeholders become psycopg's, and the
few SQLite forms with a mechanical PostgreSQL equivalent are rewritten there (`INSERT OR
IGNORE ...` becomes `INSERT ... ON CONFLICT DO NOTHING`; the retention marks' triggers make a
row the trigger drops count as not inserted on both). Transactions keep SQLite's semantics:
`BEGIN IMMEDIATE` is `BEGIN` plus a transaction-scoped advisory lock, so write transactions
run one at a time across every instance on the database, as they do on one SQLite file
(central's read-modify-writes rely on it); a later step may narrow the lock (per bus).

Nothing pretends to work. A statement with a SQLite-only form that has no translation
(PRAGMA, json_extract, INSERT OR REPLACE, rowid, LIKE's case rules, `IS ?`, ...), a
sqlite-utils table helper (`db.table(...)`) or a sqlite3 attribute (`lastrowid`, `cursor()`)
raises `NotPorted` naming it; each such statement gets its PostgreSQL form beside the SQLite
one, behind a named function of its module (`dialect(store)` says which). And `CentralStore`
itself refuses a URL: only code that has been ported opens PostgreSQL, through
`pg_store.open_store`.

What is ported (each tested on a real server): the store's core (schema, fleet entries,
desired and reported documents), the telemetry ingest (records, events, duplicates, purge
marks, the ranges for receipts: tests/test_store_backends.py, test_central_ingest.py,
test_central_group_commit.py), and what `busfleet central serve` runs besides: commands
(commands.py), alarms, messages, diversions, groups, the media library and playlists, GTFS
import (gtfs_load.py: a server-side cursor streams, a typed temporary table sorts) and
reading, timetable versions and publications, retention (JSON through `has_position` and
jsonb), and the service's claim (claim.py: a shared advisory lock per instance). So `central
serve --db postgresql://...` runs, and so do the commands that open the database themselves
(`import-gtfs` without a central, `retention`), and the reports and listings of queries.py
and the report copies (ads.py `copy_plays`, departures; tests/test_reports_backends.py checks
that every reader answers alike on both). Should a statement still meet `NotPorted`, a
dispatcher's request that reaches it is answered failed=True naming it
(central/service/dispatch.py), never a crash of the service.

Schema: the same migrations, one list per dialect of the same length (schema.py, and
pg_schema.py beside it): version N is the same tables, columns, keys and indexes on both,
checked by a test. Types map INTEGER -> bigint, REAL -> double precision, TEXT -> text,
BLOB -> bytea; SQLite's triggers with RAISE(IGNORE) are BEFORE INSERT triggers returning NULL;
json_valid partial indexes use a small immutable function. The version is `PRAGMA
user_version` on SQLite and the one row of `central_schema` on PostgreSQL.

Results read alike: numeric results (SUM, AVG of integers) come back as int or float, as on
SQLite. Differences that stay to port with their statements: text sorting (a cluster with
locale C sorts as SQLite does; deploy/ says to create the database so), NULL ordering (last
in ascending order on PostgreSQL), two-argument MIN/MAX (GREATEST/LEAST), `lastrowid`
(RETURNING).

How a module gets a PostgreSQL form: the statement's text stays portable where it can (most
already are: plain SELECT/UPDATE/DELETE, `INSERT ... ON CONFLICT(...) DO UPDATE`); where it
cannot, the module keeps both texts and picks by `dialect(store)`. The ingest's hot path
(telemetry.py) may go further on PostgreSQL (COPY into a temporary table, then one INSERT ...
SELECT ... ON CONFLICT DO NOTHING) behind the same `add_records`.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Literal

__all__ = [
    "Dialect",
    "NotPorted",
    "RolledBack",
    "dialect",
    "is_postgres_url",
    "is_store_failure",
]

Dialect = Literal["sqlite", "postgresql"]


class NotPorted(Exception):
    """This part of central does not run on PostgreSQL yet (the message says which)."""


class RolledBack(Exception):
    """The database rolled the transaction back instead of committing it (PostgreSQL answers a
    COMMIT after a failed statement so, without an error): nothing of it is stored."""


def is_store_failure(exc: BaseException) -> bool:
    """Whether `exc` is the database failing rather than one message being bad: the whole
    transaction must roll back, and nothing of it may be receipted. On SQLite a failed
    statement undoes only itself, except an OperationalError (disk full, I/O, locked); on
    PostgreSQL any error aborts the transaction it is in."""
    if isinstance(exc, sqlite3.OperationalError | RolledBack):
        return True
    psycopg = sys.modules.get("psycopg")  # no psycopg error without psycopg loaded
    return psycopg is not None and isinstance(exc, psycopg.Error)


def is_postgres_url(db: str) -> bool:
    """Whether the database setting names a PostgreSQL server rather than a SQLite file."""
    return db.startswith(("postgresql://", "postgres://"))


def dialect(store: object) -> Dialect:
    """The SQL dialect of `store`'s database: which text a module with two picks."""
    return "postgresql" if getattr(store, "backend", "sqlite") == "postgresql" else "sqlite"
