"""People (each account's role at central) and the audit log (migration 12); the rules are
central/roles.py's. Plain SQL, the same on both backends.

`people`: an account's role, since when, recorded by whom. `audit`: one row per request
central answered that changed something or was refused: when, which account as which role,
the request's type and its summary (protocols.requests.described), ok, and the answer (the
error, or the result in short). Rows come in arrival order (`id`).
"""

from __future__ import annotations

from typing import Any

from central.store.db import CentralStore

__all__ = [
    "AUDIT_COLUMNS",
    "add_audit",
    "admins",
    "audit_rows",
    "has_people",
    "people",
    "remove_person",
    "role_of",
    "set_person",
]

AUDIT_COLUMNS = ("id", "t", "account", "role", "request", "summary", "ok", "answer")
_AUDIT = ", ".join(AUDIT_COLUMNS)
TEXT_CAP = 1000  # characters of a summary or an answer kept


def role_of(store: CentralStore, name: str) -> str | None:
    """`name`'s role, or None when it has none."""
    row = store.db.execute("SELECT role FROM people WHERE name = ?", [name]).fetchone()
    return None if row is None else str(row[0])


def has_people(store: CentralStore) -> bool:
    """Whether any account has a role (roles are in force from the first on)."""
    return store.db.execute("SELECT 1 FROM people LIMIT 1").fetchone() is not None


def admins(store: CentralStore) -> list[str]:
    rows = store.db.execute("SELECT name FROM people WHERE role = 'admin'").fetchall()
    return sorted(str(r[0]) for r in rows)


def people(store: CentralStore) -> list[dict[str, Any]]:
    """Every account with a role, by name."""
    rows = store.db.query("SELECT name, role, created, by FROM people")
    return sorted(rows, key=lambda r: str(r["name"]))


def set_person(store: CentralStore, name: str, role: str, by: str, now: float) -> None:
    with store.transaction():
        store.db.execute(
            "INSERT INTO people (name, role, created, by) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET role = excluded.role,"
            " created = excluded.created, by = excluded.by",
            [name, role, now, by],
        )


def remove_person(store: CentralStore, name: str) -> bool:
    with store.transaction():
        return store.db.execute("DELETE FROM people WHERE name = ?", [name]).rowcount > 0


def add_audit(
    store: CentralStore,
    *,
    t: float,
    account: str,
    role: str,
    request: str,
    summary: str,
    ok: bool,
    answer: str,
) -> None:
    with store.transaction():
        store.db.execute(
            "INSERT INTO audit (t, account, role, request, summary, ok, answer)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [t, account, role, request, summary[:TEXT_CAP], int(ok), answer[:TEXT_CAP]],
        )


def audit_rows(
    store: CentralStore, since: float = 0.0, account: str | None = None
) -> list[dict[str, Any]]:
    """The audit log from `since` on, oldest first; one account's with `account`."""
    if account is None:
        sql = f"SELECT {_AUDIT} FROM audit WHERE t >= ? ORDER BY id"
        params: list[Any] = [since]
    else:
        sql = f"SELECT {_AUDIT} FROM audit WHERE account = ? AND t >= ? ORDER BY id"
        params = [account, since]
    return [dict(row, ok=bool(row["ok"])) for row in store.db.query(sql, params)]
