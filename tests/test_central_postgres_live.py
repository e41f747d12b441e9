"""`busfleet central serve` on PostgreSQL, live: a real central process with `--db
postgresql://...`, a real mosquitto, a simulated bus (`busfleet sim bus`: GPS simulator and
the real agent) and the dispatcher's command line, each a process of its own. Central stores
the bus's telemetry on the server and answers the dispatcher's requests from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from busfleet.broker.launch import Broker
from busfleet.cli import main
from tests.fleet_helpers import Procs, wait_central_online, wait_for
from tests.postgres_helpers import free_port

WAIT = 60.0
BUS = "bus-pg1"


def busfleet(*argv: str) -> subprocess.CompletedProcess[str]:
    """The dispatcher's command line, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "busfleet.cli", *argv], capture_output=True, text=True, timeout=120
    )


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """What central stored, read on the server beside it (its own connection)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def test_central_serve_on_postgresql_stores_a_buses_telemetry_and_answers_the_dispatcher(
    mosquitto: Broker, postgres_url: str, tmp_path: Path
) -> None:
    conn = ["--db", postgres_url, "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)]
    procs = Procs(tmp_path, mosquitto.port)
    try:
        central = procs.start("central", "central", "serve", *conn)
        wait_central_online(mosquitto, WAIT)
        procs.start(
            BUS, "sim", "bus", "--id", BUS, "--data-dir", str(tmp_path / BUS),
            "--mqtt-port", str(mosquitto.port), "--rate", "2",
        )  # fmt: skip

        def stored() -> list[int]:
            rows = query(postgres_url, "SELECT seq FROM telemetry WHERE bus = %s", BUS)
            return [r[0] for r in rows]

        wait_for(lambda: len(stored()) >= 5, WAIT, "the bus's telemetry on PostgreSQL")
        with_position = query(
            postgres_url, "SELECT count(*) FROM telemetry WHERE bus = %s AND lat IS NOT NULL", BUS
        )
        assert with_position[0][0] >= 1, "the simulated GPS's positions are stored"

        # Dispatcher requests, answered by central from the server: an assignment (a desired
        # document), a command the bus answers, and the commands listed back.
        assigned = busfleet("central", "assign", BUS, "--route", "R1", *conn)
        assert assigned.returncode == 0, assigned.stderr
        assert f"{BUS}: desired state version 1 published" in assigned.stdout
        assert query(postgres_url, "SELECT version FROM desired WHERE bus = %s", BUS) == [(1,)]
        sent = busfleet("central", "command", BUS, "announce", "--arg", "text=Hallo", *conn)
        assert sent.returncode == 0, sent.stderr
        command_id = sent.stdout.strip().rsplit(" ", 1)[-1]

        def answered() -> str | None:
            rows = query(postgres_url, "SELECT status FROM commands WHERE id = %s", command_id)
            return None if not rows or rows[0][0] == "sent" else str(rows[0][0])

        assert wait_for(answered, WAIT, "the bus's answer to the command") == "ok"
        listed = busfleet("central", "commands", "--bus", BUS, *conn)
        assert listed.returncode == 0, listed.stderr
        [row] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert (row["id"], row["name"], row["status"]) == (command_id, "announce", "ok")
        assert central.poll() is None, "central ran on throughout"
        seqs = stored()
        assert len(seqs) == len(set(seqs))
    finally:
        procs.close()


def test_a_postgresql_server_that_cannot_be_reached_is_one_clear_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql://central:secret@127.0.0.1:{free_port()}/nowhere"
    assert main(["central", "serve", "--db", url, "--log-level", "WARNING"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("busfleet central serve: 127.0.0.1:") and "Traceback" not in err
    assert "secret" not in err, "the password is never shown"
