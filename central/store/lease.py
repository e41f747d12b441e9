"""Leases: a named role that one holder at a time may play until a time (table `leases`).

`hold` takes or renews the lease in one write transaction with portable SQL (SQLite and
PostgreSQL alike): the row is written only if nobody holds it, the caller already holds it,
or the holder's lease has expired; then the row is read back, so the answer is whoever holds
it now. Times are the callers' wall clocks (seconds since the epoch): instances on several
machines need their clocks in step (NTP), and the holder gives the role up before its lease
runs out by its own clock (central/service/leader.py), so a small skew never makes two holders.
"""

from __future__ import annotations

from central.store.db import CentralStore

__all__ = ["hold", "release"]


def hold(store: CentralStore, name: str, holder: str, now: float, ttl: float) -> tuple[str, float]:
    """Take or renew lease `name` for `holder` until `now + ttl` if it is free, expired or
    `holder`'s already; returns (who holds it, until when) after that."""
    with store.transaction():
        store.db.execute(
            "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
            "WHERE leases.holder = excluded.holder OR leases.expires < ?",
            (name, holder, now + ttl, now),
        )
        row = store.db.execute(
            "SELECT holder, expires FROM leases WHERE name = ?", (name,)
        ).fetchone()
    assert row is not None  # written above, or held by another
    return str(row[0]), float(row[1])


def release(store: CentralStore, name: str, holder: str) -> bool:
    """Give lease `name` up if `holder` holds it (a clean stop: the next may take it at once)."""
    with store.transaction():
        cur = store.db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
    return cur.rowcount > 0
