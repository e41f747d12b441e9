"""Authorised sessions on disk, so that an agent restart does not log every passenger out.

GDPR (REFERENCE.md section 4: MAC addresses are personal data; keep them in memory or hashed,
only for the session). What is written here, and why it is enough:

- no MAC and no IP address: a session's row holds its key, HMAC-SHA256(salt, MAC|IP), its
  acceptance time, last activity and byte counts, and is deleted when the session ends;
- the salt is made afresh for every boot of the machine (the kernel's boot id is stored
  beside it): after a reboot every row is deleted and the old keys can no longer be linked
  to anyone. Sessions cannot outlive a boot anyway: the firewall's set lives in the kernel;
- `secure_delete` makes SQLite overwrite deleted rows instead of leaving them in free pages.

The tables live in agent.sqlite (onboard/store.py), opened once by the agent; the portal run
alone (`python -m onboard.portal`) opens the same file through the same module.

A restarted agent recognises its clients by computing the key again, either for the MAC and
IP pairs the kernel's set still holds or for a client's next request to the portal.
Times are seconds of CLOCK_MONOTONIC, meaningful within one boot like everything else here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path

from onboard.portal.sessions import Stored
from onboard.store import AgentStore, open_store

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def current_boot_id() -> str:
    """The kernel's random id of this boot ("" where there is none)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


class SessionStore:
    """The authorised sessions (`portal_sessions`) and this boot's salt (`portal_meta`).

    Give it the agent's store; given a path (the portal run alone, tests) it opens agent.sqlite
    through onboard.store and closes it with itself.
    """

    def __init__(self, store: AgentStore | str | Path, *, boot_id: str | None = None) -> None:
        self._owns_store = not isinstance(store, AgentStore)
        self.store = store if isinstance(store, AgentStore) else open_store(store)
        self.db = self.store.db
        self.boot_id = current_boot_id() if boot_id is None else boot_id
        self.salt = self._salt_for_this_boot()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM portal_meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def _salt_for_this_boot(self) -> bytes:
        salt = self._meta("salt")
        if salt is not None and self._meta("boot_id") == self.boot_id and self.boot_id:
            return bytes.fromhex(salt)
        fresh = secrets.token_bytes(32)
        with self.store.transaction():
            self.db.execute("DELETE FROM portal_sessions")
            self.db.execute(
                "INSERT OR REPLACE INTO portal_meta (key, value)"
                " VALUES ('boot_id', ?), ('salt', ?)",
                [self.boot_id, fresh.hex()],
            )
        return fresh

    def load(self) -> list[Stored]:
        """Every stored session, oldest first."""
        rows = self.db.execute(
            "SELECT key, accepted, last_seen, bytes_up, bytes_down FROM portal_sessions"
            " ORDER BY accepted"
        ).fetchall()
        return [Stored(str(k), float(a), float(s), int(u), int(d)) for k, a, s, u, d in rows]

    def save(self, sessions: Iterable[Stored]) -> None:
        """Insert or update these sessions in one transaction."""
        rows = [(s.key, s.accepted, s.last_seen, s.bytes_up, s.bytes_down) for s in sessions]
        if not rows:
            return
        with self.store.transaction():
            self.store.conn.executemany(
                "INSERT OR REPLACE INTO portal_sessions"
                " (key, accepted, last_seen, bytes_up, bytes_down) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def delete(self, keys: Iterable[str]) -> None:
        """Forget these sessions (they ended)."""
        keys = list(keys)
        if keys:
            with self.store.transaction():
                self.store.conn.executemany(
                    "DELETE FROM portal_sessions WHERE key = ?", [(k,) for k in keys]
                )

    def close(self) -> None:
        """Close the store if this opened it; the agent closes a shared one."""
        if self._owns_store:
            self.store.close()
