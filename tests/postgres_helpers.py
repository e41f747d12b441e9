"""A real PostgreSQL for tests: initdb + pg_ctl in a temporary directory, on a free port.

`PostgresServer` is a context manager: a cluster of its own (data, unix socket and log in one
temporary directory), started on a free loopback port and stopped and deleted after. PostgreSQL
refuses to run as root, and CI runs as root: there the cluster belongs to the `postgres` system
user (Debian's package creates it; `nobody` otherwise) and its programs run through `runuser`.
fsync and synchronous_commit stay on, as in production: durability tests run against it.

The `postgres` fixture (registered in conftest.py) is one server per test process (so one per
xdist worker, each on its own port and directory); `postgres_url` is a fresh, empty database
on it for one test, dropped after.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

SUPERUSER = "central"
START_TIMEOUT_S = 60  # a busy CI machine is slow; a server that never starts fails anyway


def bindir() -> Path:
    """The directory of initdb and pg_ctl (Debian keeps them out of PATH)."""
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found:
            return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: `./run test` installs `postgresql`")
    return versions[-1].parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster, started on entry, stopped and deleted on exit."""

    def __init__(self) -> None:
        stop_abandoned()
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.dir / OWNER_PID).write_text(str(os.getpid()))
        self.data = self.dir / "data"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.owner = _unprivileged_owner()
        self._databases = itertools.count(1)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def __enter__(self) -> PostgresServer:
        try:
            if self.owner is not None:
                os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
            self._run(
                "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C",  # text sorts by bytes, as in SQLite
            )  # fmt: skip
            options = (
                f"-p {self.port} -c listen_addresses={self.host} -k {self.dir}"
                " -c fsync=on -c synchronous_commit=on"
            )
            self._run(
                "pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.data),
                "-l", str(self.dir / "server.log"), "-o", options,
            )  # fmt: skip
        except BaseException:
            self._stop_now()  # a start that timed out may still come up: never leave it
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))
        except RuntimeError:
            self._stop_now()
            raise
        finally:
            self._remove()

    def _stop_now(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"test_{next(self._databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, program: str, *args: str) -> None:
        argv = [str(bindir() / program), *args]
        if self.owner is not None:
            argv = ["runuser", "-u", self.owner.pw_name, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr or done.stdout}\n{self.log()}"
            )

    def _remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


PREFIX = "busfleet-pg-"
OWNER_PID = "owner.pid"  # the test process a cluster belongs to


def stop_abandoned() -> None:
    """Stop and delete the clusters of test processes that died without stopping them (a
    killed pytest or xdist worker): pg_ctl detaches the server, so nothing else would."""
    for directory in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            pid = int((directory / OWNER_PID).read_text())
        except (OSError, ValueError):
            continue  # being created, or not ours
        if Path(f"/proc/{pid}").exists():
            continue
        server = PostgresServer.__new__(PostgresServer)
        server.dir, server.data, server.owner = directory, directory / "data", _unprivileged_owner()
        server._stop_now()
        server._remove()


def _unprivileged_owner() -> pwd.struct_passwd | None:
    """Who runs the cluster when we are root (PostgreSQL refuses root); None: ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and no `postgres` or `nobody` user to run PostgreSQL")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL for this test process, stopped at its end."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test, dropped after it."""
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def central_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Central's database setting for a test that runs on both backends: a SQLite file, or a
    fresh database on this process's PostgreSQL (open it with pg_store.open_store)."""
    if request.param == "sqlite":
        yield str(tmp_path / "central.sqlite")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)
