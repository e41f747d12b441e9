"""Fleet health from the events table: a bus's newest `health` report (central/fleet/health.py).

No table of its own: the reports are events, stored once by the ingest like every other, kept
as long as events are (retention), backfilled ones included (they are history, shown with the
figures, never alarming). The newest is the one with the highest sequence number: the bus's
order, not its clock's.
"""

from __future__ import annotations

from typing import Any

from central.store.db import CentralStore

__all__ = ["latest_health"]


def latest_health(store: CentralStore, bus: str, kind: str = "health") -> dict[str, Any] | None:
    """The bus's newest health event: t, data (JSON text), backfill, received."""
    sql = (
        "SELECT t, data, backfill, received FROM events WHERE bus = ? AND kind = ?"
        " ORDER BY seq DESC LIMIT 1"
    )
    return next(iter(store.db.query(sql, [bus, kind])), None)
