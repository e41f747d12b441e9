"""The one transaction helper of central's store (there were three).

Every transaction takes SQLite's write lock at once (BEGIN IMMEDIATE): a transaction that read
first and then wanted to write could find another process's commit in between and fail
instead of waiting (busy_timeout does not help there). Inside an open transaction a nested
use is part of it, so the ingest's group commit and a feature's read-modify-write compose.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

__all__ = ["transaction"]


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once; joins the transaction already open, if any."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # some errors (a full disk) have rolled it back already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
