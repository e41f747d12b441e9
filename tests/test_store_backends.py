"""Central's store on both backends: SQLite (a file) and PostgreSQL (a real server, started by
the tests: tests/postgres_helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from central.store import pg_schema, schema
from central.store.pg_store import PgCentralStore, open_store
from tests.postgres_helpers import PostgresServer


def test_a_postgresql_server_starts_answers_and_is_gone_after() -> None:
    with PostgresServer() as server:
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            settings: dict[str, str] = dict(
                conn.execute("SELECT name, setting FROM pg_settings").fetchall()
            )
            assert settings["fsync"] == "on" and settings["synchronous_commit"] == "on"
            pid = conn.info.backend_pid
            # PostgreSQL refuses root: as root, the cluster runs as an unprivileged user.
            owner = server.owner.pw_uid if server.owner is not None else os.geteuid()
            assert _uid_of(pid) == owner
            assert _uid_of(pid) != 0
        directory = server.dir
    assert not directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url(), connect_timeout=5)
    assert not os.path.exists(f"/proc/{pid}")


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_the_store_opens_a_postgresql_url_and_migrates_it(postgres_url: str) -> None:
    store = open_store(postgres_url)
    assert isinstance(store, PgCentralStore)
    assert store.schema_version() == len(pg_schema.MIGRATIONS) == len(schema.MIGRATIONS)
    store.close()
    again = open_store(postgres_url)  # a second start finds it done
    assert isinstance(again, PgCentralStore) and again.schema_version() == len(schema.MIGRATIONS)
    again.close()
