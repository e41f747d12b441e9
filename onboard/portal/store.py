"""Authorised sessions on disk, so that an agent restart does not log every passenger out.

GDPR (REFERENCE.md section 4: MAC addresses are personal data; keep them in memory or hashed,
only for the session). What is written here, and why it is enough:

- no MAC and no IP address: a session's row holds its key, HMAC-SHA256(salt, MAC|IP), its
  acceptance time, last activity and byte counts, and is deleted when the session ends;
- the salt is made afresh for every boot of the machine (the kernel's boot id is stored
  beside it): after a reboot every row is deleted and the old keys can no longer be linked
  to anyone. Sessions cannot outlive a boot anyway: the firewall's set lives in the kernel;
- `secure_delete` makes SQLite overwrite deleted rows instead of leaving them in free pages.

A restarted agent recognises its clients by computing the key again, either for the MAC and
IP pairs the kernel's set still holds or for a client's next request to the portal.
Times are seconds of CLOCK_MONOTONIC, meaningful within one boot like everything else here.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import sqlite_utils

from onboard.portal.sessions import Stored

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def current_boot_id() -> str:
    """The kernel's random id of this boot ("" where there is none)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


class SessionStore:
    """SQLite (WAL) table of authorised sessions plus this boot's salt."""

    def __init__(self, path: str | Path, *, boot_id: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        # A process kill loses nothing with NORMAL in WAL mode; a power cut may lose the
        # last accepts, but a power cut also empties the kernel's set: those sessions are over.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, accepted REAL NOT NULL,"
            " last_seen REAL NOT NULL, bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.boot_id = current_boot_id() if boot_id is None else boot_id
        self.salt = self._salt_for_this_boot()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def _salt_for_this_boot(self) -> bytes:
        salt = self._meta("salt")
        if salt is not None and self._meta("boot_id") == self.boot_id and self.boot_id:
            return bytes.fromhex(salt)
        fresh = secrets.token_bytes(32)
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM sessions")
        self.db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('boot_id', ?), ('salt', ?)",
            [self.boot_id, fresh.hex()],
        )
        self.db.execute("COMMIT")
        return fresh

    def load(self) -> list[Stored]:
        rows = self.db.execute(
            "SELECT key, accepted, last_seen, bytes_up, bytes_down FROM sessions ORDER BY accepted"
        ).fetchall()
        return [Stored(str(k), float(a), float(s), int(u), int(d)) for k, a, s, u, d in rows]

    def save(self, sessions: Iterable[Stored]) -> None:
        """Insert or update these sessions in one transaction."""
        rows = [(s.key, s.accepted, s.last_seen, s.bytes_up, s.bytes_down) for s in sessions]
        if not rows:
            return
        self.db.execute("BEGIN")
        self.db.conn.executemany(
            "INSERT OR REPLACE INTO sessions (key, accepted, last_seen, bytes_up, bytes_down)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        self.db.execute("COMMIT")

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.db.execute("BEGIN")
            self.db.conn.executemany("DELETE FROM sessions WHERE key = ?", [(k,) for k in keys])
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
