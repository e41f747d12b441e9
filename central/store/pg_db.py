"""The store's connection interface on PostgreSQL: the subset of sqlite-utils' `Database` and
sqlite3's `Connection` that central/store/*.py uses, over one psycopg 3 connection (backend.py
has the design).

Every statement goes through pg_sql.translate. The connection is in autocommit mode and the
transactions are the store's own (tx.py's BEGIN IMMEDIATE / COMMIT / ROLLBACK, as on SQLite):
`BEGIN IMMEDIATE` also takes WRITE_LOCK, a transaction-scoped advisory lock, so that write
transactions run one at a time across all the connections to the database, as SQLite's write
lock makes them. Anything else of sqlite-utils or sqlite3 raises NotPorted with its name.
"""

from __future__ import annotations

import decimal
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper
from psycopg.types.numeric import NumericLoader

from central.store.backend import NotPorted, RolledBack
from central.store.pg_sql import translate

__all__ = ["WRITE_LOCK", "PgConnection", "PgCursor", "PgDatabase", "PgStreamCursor", "connect"]

WRITE_LOCK = 0x6275_7366_6C74  # "busflt": the advisory lock of central's write transactions
CHUNK_ROWS = 10_000  # executemany sends a long stream of rows in pieces: bounded memory

Params = Sequence[Any] | Mapping[str, Any] | None

log = logging.getLogger("busfleet.central.store")

NUL_REPLACEMENT = "\ufffd"  # what a NUL in a text becomes on PostgreSQL


class _SqliteNumbers(NumericLoader):
    """numeric (SUM or AVG of integers) as SQLite gives it: an int when whole, else a float."""

    def load(self, data: Any) -> Any:
        value = super().load(data)
        if isinstance(value, decimal.Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return value


class _TextWithoutNul(Dumper):
    """A str parameter as text of unknown type (as psycopg's own), a NUL character in it
    replaced by U+FFFD: PostgreSQL's text cannot hold NUL (SQLite's can), and one bus's event
    with a NUL in its kind must not fail the batch it came in (and, unreceipted, come back
    forever). Counted and logged (`replaced`: the first, then every 1,000th)."""

    replaced = 0

    def dump(self, obj: str) -> bytes:
        if "\x00" in obj:
            cls = _TextWithoutNul
            cls.replaced += 1
            if cls.replaced % 1000 == 1:
                log.warning(
                    "a text with NUL characters stored with U+FFFD instead (%d so far): %r",
                    cls.replaced,
                    obj[:80],
                )
            obj = obj.replace("\x00", NUL_REPLACEMENT)
        return obj.encode()


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection to `url` for the store: autocommit (the store opens its transactions)."""
    conn = psycopg.connect(url, autocommit=True, client_encoding="utf8")
    conn.adapters.register_loader("numeric", _SqliteNumbers)
    conn.adapters.register_dumper(str, _TextWithoutNul)
    return conn


class PgCursor:
    """What a statement gave back: rows as tuples, and how many rows it changed."""

    def __init__(self, cur: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def description(self) -> Any:
        return self._cur.description

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cur.fetchall() if self._cur.description else []

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())

    def __getattr__(self, name: str) -> Any:
        raise NotPorted(f"sqlite3.Cursor.{name} on PostgreSQL (use RETURNING)")


class PgConnection:
    """sqlite3.Connection's part the store uses: execute, executemany, transactions."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.raw = conn
        self._changes = 0

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    @property
    def total_changes(self) -> int:
        """Rows inserted, updated or deleted through this connection (as sqlite3 counts)."""
        return self._changes

    def execute(self, sql: str, params: Params = None) -> PgCursor:
        word = " ".join(sql.split()).upper().rstrip(";")
        if word in ("BEGIN", "BEGIN IMMEDIATE", "BEGIN DEFERRED", "BEGIN EXCLUSIVE"):
            cur = self.raw.execute("BEGIN")
            if word != "BEGIN DEFERRED" and word != "BEGIN":
                self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            return PgCursor(cur)
        # Parameters always, if only (): psycopg turns the doubled "%" back only when it has some.
        args = () if params is None else params
        cur = self.raw.execute(_statement(sql, isinstance(params, Mapping)), args)
        if word == "COMMIT" and cur.statusmessage == "ROLLBACK":
            raise RolledBack("the transaction was rolled back: a statement in it failed")
        self._count(cur)
        return PgCursor(cur)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> PgCursor:
        """Every row of `rows` (an iterator of millions of stop times, say) in pieces of
        CHUNK_ROWS: each piece is read before psycopg sends it (a piece may come from one of
        this connection's server-side cursors, see `cursor`), and memory stays bounded."""
        cur = self.raw.cursor()
        pending = iter(rows)
        while chunk := list(itertools.islice(pending, CHUNK_ROWS)):
            # psycopg pipelines the rows; its rowcount is their sum
            cur.executemany(_statement(sql, isinstance(chunk[0], Mapping)), chunk)
            self._count(cur)
        return PgCursor(cur)

    def cursor(self) -> PgStreamCursor:
        """A cursor that streams its rows from the server (sqlite3's `cursor()`: rows come as
        they are read, and the connection can run other statements in between)."""
        return PgStreamCursor(self)

    def close(self) -> None:
        self.raw.close()

    def _count(self, cur: psycopg.Cursor[tuple[Any, ...]]) -> None:
        status = (cur.statusmessage or "").split(" ", 1)[0]
        if status in ("INSERT", "UPDATE", "DELETE") and cur.rowcount > 0:
            self._changes += cur.rowcount

    def __getattr__(self, name: str) -> Any:
        raise NotPorted(f"sqlite3.Connection.{name} on PostgreSQL")


class PgStreamCursor:
    """sqlite3.Cursor's streaming use (`conn.cursor().execute(sql)`, then iterate and close)
    over a server-side cursor: rows are fetched in batches, so millions need no memory. Inside
    a transaction the cursor ends with it; outside one it is held (WITH HOLD) until closed."""

    _names = itertools.count(1)

    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn
        name = f"central_stream_{next(self._names)}"
        self._cur: psycopg.ServerCursor[tuple[Any, ...]] = conn.raw.cursor(
            name, withhold=not conn.in_transaction
        )

    def execute(self, sql: str, params: Params = None) -> PgStreamCursor:
        args = () if params is None else params
        self._cur.execute(_statement(sql, isinstance(params, Mapping)), args)
        return self

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._cur)

    def close(self) -> None:
        self._cur.close()


def _statement(sql: str, named: bool) -> str:
    """The store's own statement (never text from outside), translated."""
    return translate(sql, named)


class PgDatabase:
    """sqlite-utils' Database's part the store uses: execute, query, conn."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.conn = PgConnection(conn)

    def execute(self, sql: str, params: Params = None) -> PgCursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Params = None) -> Iterator[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        names = [c.name for c in cur.description or ()]
        for row in cur.fetchall():
            yield dict(zip(names, row, strict=True))

    def __getattr__(self, name: str) -> Any:
        raise NotPorted(f"sqlite-utils' Database.{name} on PostgreSQL (write its SQL)")
