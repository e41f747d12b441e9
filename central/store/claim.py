"""Who may write the database right now: running services, or a tool while none runs.

Every `central serve` instance holds a shared claim on its database for as long as it runs; a
tool that writes the database itself (importing a feed before central first starts, a
retention purge) takes the claim exclusively, without waiting. So the question "does a central
run on this database?" is answered by the database's own machine, not by the broker: a tool
with a wrong broker address, or a broker that is down, can never write behind a running
service. An in-memory database has nobody else to meet.

The claim lives with the database:

- SQLite: a lock (flock) on `<db>.service.lock` beside the file.
- PostgreSQL: a session-level advisory lock (CLAIM_LOCK) on the database, taken on a
  connection of the claim's own and held while it is open. Several instances share one
  database (issue 15), so a service's claim is shared, never exclusive: N instances run side
  by side, and the write transactions themselves are serialised by the store (WRITE_LOCK,
  pg_db.py), not by the claim. A tool's exclusive claim is refused while any instance holds
  its shared one, and an instance starting while a tool holds it waits for the tool, as on
  SQLite. The server releases the lock of a connection that ends, so an instance that dies
  (SIGKILL, a lost machine) leaves no claim behind.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from central.errors import CentralRunning
from central.store.backend import is_postgres_url

__all__ = ["CLAIM_LOCK", "offline_claim", "service_claim"]

CLAIM_LOCK = 0x6275_7366_636C  # "busfcl": the advisory lock of the services' claim


def _lock_path(db: str | Path) -> Path | None:
    return None if str(db) == ":memory:" else Path(f"{db}.service.lock")


def _running(db: str | Path) -> CentralRunning:
    where = str(db).rsplit("@", 1)[-1]  # a URL's user (and password) are nobody's business
    return CentralRunning(
        f"a central service is running on {where}: ask it (check --mqtt-host/--mqtt-port)"
    )


@contextlib.contextmanager
def _claim(db: str | Path, shared: bool) -> Iterator[None]:
    if is_postgres_url(str(db)):
        with _pg_claim(str(db), shared):
            yield
        return
    path = _lock_path(db)
    if path is None:
        yield
        return
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _running(db) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _pg_claim(url: str, shared: bool) -> Iterator[None]:
    from central.store.pg_db import connect  # psycopg only for a server

    conn = connect(url)
    try:
        if shared:
            conn.execute("SELECT pg_advisory_lock_shared(%s)", (CLAIM_LOCK,))
        else:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (CLAIM_LOCK,)).fetchone()
            if row is None or not row[0]:
                raise _running(url)
        yield  # the lock goes with the connection
    finally:
        conn.close()


def service_claim(db: str | Path) -> contextlib.AbstractContextManager[None]:
    """Held by a running service (shared: several instances may run on one database)."""
    return _claim(db, shared=True)


def offline_claim(db: str | Path) -> contextlib.AbstractContextManager[None]:
    """Held by a tool writing directly; CentralRunning at once if a service holds its claim."""
    return _claim(db, shared=False)
