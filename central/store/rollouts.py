"""Software rollouts and where each bus of one stands (migration 11); the rules are
central/rollouts.py's.

A rollout is a row of `rollouts` (its waves as JSON, its state: running, halted, done,
cancelled); each bus it targets is a row of `rollout_buses` with its wave, its state
(pending, assigned, updated, failed, refused), since when, why, and the version of the
desired document that first carried the release to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from central.store.db import CentralStore

__all__ = [
    "ROLLOUT_COLUMNS",
    "add_rollout",
    "bus_rows",
    "cancelled_with_alarm",
    "open_rollouts_of",
    "rollout_row",
    "rollouts",
    "running_ids",
    "set_bus",
    "set_state",
    "update_events",
]

ROLLOUT_COLUMNS = (
    "id",
    "version",
    "targets",
    "waves",
    "halt_on",
    "state",
    "created",
    "by",
    "halted_reason",
    "ended",
    "alarm_bus",
)
_SELECT = ", ".join(ROLLOUT_COLUMNS)
BUS_COLUMNS = ("rollout", "bus", "wave", "state", "since", "detail", "desired")


def add_rollout(
    store: CentralStore, row: dict[str, Any], buses: Iterable[tuple[str, int]], now: float
) -> None:
    """A new rollout and its buses, (bus, wave) each, all pending."""
    marks = ", ".join("?" * len(ROLLOUT_COLUMNS))
    with store.transaction():
        store.db.execute(
            f"INSERT INTO rollouts ({_SELECT}) VALUES ({marks})",
            [row.get(c) for c in ROLLOUT_COLUMNS],
        )
        store.db.conn.executemany(
            "INSERT INTO rollout_buses (rollout, bus, wave, state, since, detail, desired)"
            " VALUES (?, ?, ?, 'pending', ?, '', 0)",
            ((row["id"], bus, wave, now) for bus, wave in buses),
        )


def rollout_row(store: CentralStore, rollout: str) -> dict[str, Any] | None:
    rows = list(store.db.query(f"SELECT {_SELECT} FROM rollouts WHERE id = ?", [rollout]))
    return rows[0] if rows else None


def rollouts(store: CentralStore) -> list[dict[str, Any]]:
    """Every rollout, oldest first."""
    return list(store.db.query(f"SELECT {_SELECT} FROM rollouts ORDER BY created, id"))


def running_ids(store: CentralStore) -> list[str]:
    sql = "SELECT id FROM rollouts WHERE state = 'running' ORDER BY created, id"
    return [str(r[0]) for r in store.db.execute(sql)]


def open_rollouts_of(store: CentralStore, buses: Sequence[str]) -> list[str]:
    """The running or halted rollouts that target any of `buses`."""
    found: set[str] = set()
    chunk = 500  # a statement's parameters stay few
    for start in range(0, len(buses), chunk):
        part = list(buses[start : start + chunk])
        marks = ", ".join("?" * len(part))
        sql = (
            "SELECT DISTINCT r.id FROM rollouts r JOIN rollout_buses b ON b.rollout = r.id"
            f" WHERE r.state IN ('running', 'halted') AND b.bus IN ({marks})"
        )
        found.update(str(r[0]) for r in store.db.execute(sql, part))
    return sorted(found)


def cancelled_with_alarm(store: CentralStore) -> list[tuple[str, str]]:
    """(rollout, bus) of cancelled rollouts that had halted with an alarm on that bus."""
    sql = (
        "SELECT id, alarm_bus FROM rollouts WHERE state = 'cancelled'"
        " AND alarm_bus IS NOT NULL ORDER BY id"
    )
    return [(str(r[0]), str(r[1])) for r in store.db.execute(sql)]


def set_state(
    store: CentralStore,
    rollout: str,
    state: str,
    *,
    ended: float | None = None,
    reason: str | None = None,
    alarm_bus: str | None = None,
) -> None:
    """Change a rollout's state (and, given, when it ended, why it halted, its alarm's bus)."""
    store.db.execute(
        "UPDATE rollouts SET state = ?, ended = COALESCE(?, ended),"
        " halted_reason = COALESCE(?, halted_reason), alarm_bus = COALESCE(?, alarm_bus)"
        " WHERE id = ?",
        [state, ended, reason, alarm_bus, rollout],
    )


def bus_rows(store: CentralStore, rollout: str) -> list[dict[str, Any]]:
    """The rollout's buses, by wave and bus id."""
    sql = f"SELECT {', '.join(BUS_COLUMNS)} FROM rollout_buses WHERE rollout = ? ORDER BY wave, bus"
    return list(store.db.query(sql, [rollout]))


def set_bus(
    store: CentralStore,
    rollout: str,
    bus: str,
    state: str,
    since: float,
    detail: str = "",
    desired: int | None = None,
) -> None:
    store.db.execute(
        "UPDATE rollout_buses SET state = ?, since = ?, detail = ?,"
        " desired = COALESCE(?, desired) WHERE rollout = ? AND bus = ?",
        [state, since, detail, desired, rollout, bus],
    )


def update_events(
    store: CentralStore, kinds: Sequence[str], since: float
) -> list[tuple[str, str, str, float]]:
    """(bus, kind, data, received) of the events of `kinds` central received at or after
    `since`, in the order they came."""
    marks = ", ".join("?" * len(kinds))
    sql = (
        f"SELECT bus, kind, data, received FROM events WHERE kind IN ({marks})"
        " AND received >= ? ORDER BY received, bus, seq"
    )
    return [
        (str(r[0]), str(r[1]), str(r[2]), float(r[3]))
        for r in store.db.execute(sql, [*kinds, since])
    ]
