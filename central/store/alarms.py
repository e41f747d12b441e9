"""Alarms (table `alarms`); the rules are central/fleet/alarms.py's, the flow
central/service/alarm_center.py's.

One row per alarm: its `Alarm` document as JSON text in `body`, beside the columns the
queries need (bus, kind, subject, state, times) and `retained` (still published retained).
A partial unique index keeps one open alarm per (bus, kind, subject) across workers.
"""

from __future__ import annotations

from collections.abc import Iterable

from central.store.db import CentralStore
from protocols.schemas import Alarm

__all__ = [
    "ALARM_COLUMNS",
    "add_alarm",
    "alarm_bodies",
    "alarm_body",
    "alarm_seen",
    "closed_retained",
    "open_alarm",
    "open_alarms",
    "replace_alarm",
    "retained_bodies",
    "unretain",
    "update_alarm",
]

Key = tuple[str, str, str]  # (bus, kind, subject)

# The columns copied from the Alarm document; `body` and `retained` complete the row.
ALARM_COLUMNS = ("id", "bus", "kind", "subject", "severity", "state", "raised_t", "t")
# Raised on the ingest path (a whole fleet may go offline at once): one prepared statement.
_INSERT = (
    f"INSERT OR IGNORE INTO alarms ({', '.join(ALARM_COLUMNS)}, body, retained)"
    f" VALUES ({', '.join('?' * len(ALARM_COLUMNS))}, ?, 1)"
)


def open_alarms(store: CentralStore) -> list[tuple[Key, str]]:
    """((bus, kind, subject), id) of every alarm not closed."""
    sql = "SELECT bus, kind, subject, id FROM alarms WHERE state != 'closed'"
    return [((r[0], r[1], r[2]), r[3]) for r in store.db.execute(sql)]


def alarm_body(store: CentralStore, alarm_id: str) -> str | None:
    row = store.db.execute("SELECT body FROM alarms WHERE id = ?", [alarm_id]).fetchone()
    return None if row is None else str(row[0])


def open_alarm(store: CentralStore, key: Key) -> tuple[str, str] | None:
    """(id, document) of the open alarm of (bus, kind, subject), if there is one."""
    sql = (
        "SELECT id, body FROM alarms"
        " WHERE bus = ? AND kind = ? AND subject = ? AND state != 'closed'"
    )
    row = store.db.execute(sql, key).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def alarm_seen(store: CentralStore, key: Key, raised_t: float) -> bool:
    """Whether an alarm of (bus, kind, subject) was raised at `raised_t` already."""
    sql = "SELECT 1 FROM alarms WHERE bus = ? AND kind = ? AND subject = ? AND raised_t = ?"
    return store.db.execute(sql, (*key, raised_t)).fetchone() is not None


def alarm_bodies(
    store: CentralStore, *, bus: str | None = None, open_only: bool = False, limit: int = 200
) -> list[str]:
    """Documents of the newest alarms first (of one bus; only those not closed)."""
    where: list[str] = []
    params: list[object] = []
    if bus is not None:
        where.append("bus = ?")
        params.append(bus)
    if open_only:
        where.append("state != 'closed'")
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT body FROM alarms{condition} ORDER BY raised_t DESC LIMIT ?"
    return [str(r[0]) for r in store.db.execute(sql, [*params, limit])]


def retained_bodies(store: CentralStore) -> list[str]:
    """Documents of the alarms still published retained."""
    return [str(r[0]) for r in store.db.execute("SELECT body FROM alarms WHERE retained = 1")]


def add_alarm(store: CentralStore, alarm: Alarm, body: str) -> bool:
    """Store a new alarm (retained); False, and nothing stored, if its key has an open alarm
    already (another worker raised it first, say): the caller takes that one instead."""
    cur = store.db.execute(_INSERT, [*(getattr(alarm, c) for c in ALARM_COLUMNS), body])
    return cur.rowcount > 0


def replace_alarm(store: CentralStore, alarm_id: str, alarm: Alarm, body: str) -> None:
    """Overwrite the row of `alarm_id` with `alarm` (same id): for a stored document that no
    longer reads back, so that the alarm is shown and can be acknowledged again."""
    sets = ", ".join(f"{c} = ?" for c in ALARM_COLUMNS)
    store.db.execute(
        f"UPDATE alarms SET {sets}, body = ?, retained = 1 WHERE id = ?",
        [*(getattr(alarm, c) for c in ALARM_COLUMNS), body, alarm_id],
    )


def update_alarm(store: CentralStore, alarm: Alarm, body: str) -> None:
    """Store an alarm's new state (retained again: it is to be published)."""
    store.db.execute(
        "UPDATE alarms SET state = ?, t = ?, body = ?, retained = 1 WHERE id = ?",
        (alarm.state, alarm.t, body, alarm.id),
    )


def closed_retained(store: CentralStore, before: float) -> list[str]:
    """Ids of closed alarms, last changed before `before`, still retained."""
    sql = "SELECT id FROM alarms WHERE retained = 1 AND state = 'closed' AND t < ?"
    return [str(r[0]) for r in store.db.execute(sql, [before])]


def unretain(store: CentralStore, ids: Iterable[str]) -> None:
    """These alarms' retained messages are removed: they are not published any more."""
    store.db.conn.executemany("UPDATE alarms SET retained = 0 WHERE id = ?", [(i,) for i in ids])
