"""Alarm notifications' deliveries (table `notify_deliveries`, migration 13); the flow is
central/notify/notifier.py's.

One row per delivery of one alarm to one e-mail address or webhook: `purpose` (alarm,
escalation), `state` (pending, held: waiting for quiet hours to end, sent, failed), the attempts
made, when it is due next, when it was sent and the last error (never a credential).
"""

from __future__ import annotations

from dataclasses import dataclass

from central.store.db import CentralStore

__all__ = [
    "Delivery",
    "add_delivery",
    "deliveries",
    "has_delivery",
    "record_attempt",
]

COLUMNS = (
    "id",
    "alarm",
    "rule",
    "purpose",
    "channel",
    "target",
    "state",
    "attempts",
    "created",
    "due",
    "sent",
    "error",
)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    alarm: str
    rule: str
    purpose: str  # alarm, escalation
    channel: str  # email, webhook
    target: str  # an address, a webhook's name
    state: str  # pending, held, sent, failed
    attempts: int
    created: float
    due: float
    sent: float | None
    error: str


def add_delivery(store: CentralStore, d: Delivery) -> None:
    with store.transaction():
        store.db.execute(
            f"INSERT INTO notify_deliveries ({', '.join(COLUMNS)})"
            f" VALUES ({', '.join('?' * len(COLUMNS))})",
            [getattr(d, c) for c in COLUMNS],
        )


def record_attempt(
    store: CentralStore,
    delivery_id: str,
    *,
    state: str,
    attempts: int,
    due: float,
    sent: float | None,
    error: str,
) -> None:
    """One attempt's outcome (or the end of a hold): the row's state, count, next due time."""
    with store.transaction():
        store.db.execute(
            "UPDATE notify_deliveries SET state = ?, attempts = ?, due = ?, sent = ?, error = ?"
            " WHERE id = ?",
            [state, attempts, due, sent, error[:500], delivery_id],
        )


def deliveries(store: CentralStore, *, alarm: str | None = None) -> list[Delivery]:
    """Deliveries, oldest first (of one alarm)."""
    where, params = ("WHERE alarm = ?", [alarm]) if alarm is not None else ("", [])
    sql = f"SELECT {', '.join(COLUMNS)} FROM notify_deliveries {where} ORDER BY created, id"
    return [
        Delivery(
            id=str(r[0]),
            alarm=str(r[1]),
            rule=str(r[2]),
            purpose=str(r[3]),
            channel=str(r[4]),
            target=str(r[5]),
            state=str(r[6]),
            attempts=int(r[7]),
            created=float(r[8]),
            due=float(r[9]),
            sent=None if r[10] is None else float(r[10]),
            error=str(r[11]),
        )
        for r in store.db.execute(sql, params)
    ]


def has_delivery(store: CentralStore, alarm: str, rule: str, purpose: str) -> bool:
    """Whether `rule` notified of `alarm` for `purpose` already: an alarm raised again after a
    restart of central is not announced twice, nor escalated twice."""
    sql = "SELECT 1 FROM notify_deliveries WHERE alarm = ? AND rule = ? AND purpose = ? LIMIT 1"
    return store.db.execute(sql, [alarm, rule, purpose]).fetchone() is not None
