"""Named groups of buses (migration 7); the rules are central/groups.py's."""

from __future__ import annotations

from collections.abc import Iterable

from central.store.db import CentralStore

__all__ = ["all_groups", "delete_group", "known_buses", "members", "set_group"]


def set_group(store: CentralStore, name: str, buses: Iterable[str], now: float) -> None:
    """The group `name` is these buses from now on (created, or its members replaced)."""
    with store.transaction():
        store.db.execute(
            "INSERT INTO bus_groups (name, updated) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET updated = excluded.updated",
            [name, now],
        )
        store.db.execute("DELETE FROM bus_group_members WHERE name = ?", [name])
        store.db.conn.executemany(
            "INSERT OR IGNORE INTO bus_group_members (name, bus) VALUES (?, ?)",
            ((name, bus) for bus in buses),
        )


def delete_group(store: CentralStore, name: str) -> bool:
    """Delete a group; False if there was none of that name."""
    with store.transaction():
        store.db.execute("DELETE FROM bus_group_members WHERE name = ?", [name])
        cursor = store.db.execute("DELETE FROM bus_groups WHERE name = ?", [name])
        return cursor.rowcount > 0


def members(store: CentralStore, name: str) -> list[str] | None:
    """The group's buses in order; None if there is no such group."""
    if store.db.execute("SELECT 1 FROM bus_groups WHERE name = ?", [name]).fetchone() is None:
        return None
    sql = "SELECT bus FROM bus_group_members WHERE name = ? ORDER BY bus"
    return [str(r[0]) for r in store.db.execute(sql, [name])]


def all_groups(store: CentralStore) -> list[tuple[str, float, list[str]]]:
    """(name, updated, buses) of every group, by name."""
    groups = store.db.execute("SELECT name, updated FROM bus_groups ORDER BY name").fetchall()
    buses: dict[str, list[str]] = {str(n): [] for n, _ in groups}
    for name, bus in store.db.execute("SELECT name, bus FROM bus_group_members ORDER BY name, bus"):
        buses.setdefault(str(name), []).append(str(bus))
    return [(str(n), float(u), buses[str(n)]) for n, u in groups]


def known_buses(store: CentralStore) -> list[str]:
    """Every bus central knows: a fleet entry (it was seen) or a desired document."""
    sql = "SELECT bus FROM buses UNION SELECT bus FROM desired ORDER BY bus"
    return [str(r[0]) for r in store.db.execute(sql)]
