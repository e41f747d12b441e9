"""Who may write the database right now: a running service, or a tool while none runs.

Every `central serve` worker holds a shared lock on `<db>.service.lock` for as long as it runs;
a tool that writes the database itself (importing a feed before central first starts) takes
the lock exclusively, without waiting. So the question "does a central run on this database?"
is answered by the database's own machine, not by the broker: a tool with a wrong broker
address, or a broker that is down, can never write behind a running service. An in-memory
database has nobody else to meet.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from central.errors import CentralRunning

__all__ = ["offline_claim", "service_claim"]


def _lock_path(db: str | Path) -> Path | None:
    return None if str(db) == ":memory:" else Path(f"{db}.service.lock")


@contextlib.contextmanager
def _claim(db: str | Path, mode: int) -> Iterator[None]:
    path = _lock_path(db)
    if path is None:
        yield
        return
    with path.open("a") as f:
        try:
            fcntl.flock(f, mode)
        except BlockingIOError:
            raise CentralRunning(
                f"a central service is running on {db}: ask it (check --mqtt-host/--mqtt-port)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def service_claim(db: str | Path) -> contextlib.AbstractContextManager[None]:
    """Held by a running service (shared: several workers may run on one database)."""
    return _claim(db, fcntl.LOCK_SH)


def offline_claim(db: str | Path) -> contextlib.AbstractContextManager[None]:
    """Held by a tool writing directly; CentralRunning at once if a service holds its claim."""
    return _claim(db, fcntl.LOCK_EX | fcntl.LOCK_NB)
