"""`busfleet central logs BUS`: a real agent's log, through a real central and mosquitto.

The CLI runs as a subprocess, as a technician runs it. The bus has an MQTT password file; a
line holding that password is logged through the agent's own logger (a command whose name
carries it: the agent logs the names of unknown commands) and must be redacted in the file
on disk and in the answer.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from busfleet.broker.launch import Broker, run_mosquitto
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.schemas import Command
from tests.fleet_helpers import Procs, rows, wait_central_online, wait_for

BUS = "bus-logs"
PASSWORD = "Tr0ub4dor&3-horse-battery"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
FILLER_LINES = 20_000  # ~2.8 MB of hard-to-compress lines: far more than one answer holds


@dataclass
class Live:
    broker: Broker
    procs: Procs
    log_file: Path

    def cli(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "busfleet.cli", "central", *argv,
             "--mqtt-host", self.broker.host, "--mqtt-port", str(self.broker.port)],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def logs(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli("logs", BUS, *args)


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def prefill(log_file: Path, now: float) -> None:
    """A rotated file from before the start: an old line (3 h ago) and many recent ones."""
    log_file.parent.mkdir(parents=True)
    old = f"{_stamp(now - 3 * 3600)} {BUS} INFO busfleet.test: OLDLINE from three hours ago\n"
    filler = [
        f"{_stamp(now - 600 + i * 0.01)} {BUS} INFO busfleet.test: FILLER {i:06d} "
        f"{os.urandom(40).hex()}\n"
        for i in range(FILLER_LINES)
    ]
    (log_file.parent / "agent.log.1").write_text(old + "".join(filler))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("remote-logs")
    with run_mosquitto(workdir / "mq") as broker:
        procs = Procs(workdir, broker.port)
        data_dir = workdir / BUS
        log_file = data_dir / "logs" / "agent.log"
        prefill(log_file, time.time())
        (workdir / "bus.password").write_text(PASSWORD + "\n")
        config = workdir / f"{BUS}.toml"
        config.write_text(
            f'[bus]\nid = "{BUS}"\ndata_dir = "{data_dir}"\n'
            f"[mqtt]\nport = {broker.port}\nbackoff_max_s = 2.0\ninsecure_dev_broker = true\n"
            f'password_file = "{workdir / "bus.password"}"\n'
            '[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
        )
        procs.central()
        procs.start(BUS, "agent", "--config", str(config))
        try:
            wait_central_online(broker)
            db = workdir / "central.sqlite"
            wait_for(lambda: rows(db, "SELECT 1 FROM reported WHERE bus = ?", BUS), 60, "bus up")
            yield Live(broker, procs, log_file)
        finally:
            procs.close()


async def _publish(broker: Broker, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="test-logs-raw") as c:
        await c.publish(topic, payload, qos=1)


def raw_command(live: Live, cmd_id: str, name: str, args: dict[str, object] | None = None) -> None:
    """A command as a central of another version could send it (central's types refuse it)."""
    now = time.time()
    cmd = Command(id=cmd_id, name=name, t=now, expires=now + 300, args=args or {})  # type: ignore[arg-type]
    store = CentralStore(live.procs.workdir / "central.sqlite")
    try:
        store.add_command(cmd.id, BUS, "logs", codec.encode_json(cmd.args), now, cmd.expires)
    finally:
        store.close()
    asyncio.run(_publish(live.broker, topics.command(BUS), codec.encode(cmd)))


def test_central_logs_prints_the_lines_the_agent_logged(live: Live) -> None:
    done = live.logs("--since", "30m")
    assert done.returncode == 0, done.stderr
    assert f"agent {BUS} starting" in done.stdout
    assert "link up" in done.stdout
    assert "OLDLINE" not in done.stdout  # three hours ago


def test_grep_keeps_only_lines_with_the_text(live: Live) -> None:
    done = live.logs("--grep", "link up")
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert printed and all("link up" in line for line in printed)
    assert not any("FILLER" in line for line in printed)


def test_since_reaches_back_as_far_as_asked(live: Live) -> None:
    recent = live.logs("--since", "2h", "--grep", "OLDLINE")
    assert recent.returncode == 0, recent.stderr
    assert "OLDLINE" not in recent.stdout
    older = live.logs("--since", "4h", "--grep", "OLDLINE")
    assert older.returncode == 0, older.stderr
    assert older.stdout.count("OLDLINE from three hours ago") == 1


def test_the_mqtt_password_is_never_in_the_file_nor_in_the_answer(live: Live) -> None:
    name = f"debug password={PASSWORD} again {PASSWORD}\n{PEM}"
    raw_command(live, "c-secret-1", name)
    db = live.procs.workdir / "central.sqlite"
    wait_for(
        lambda: rows(db, "SELECT 1 FROM commands WHERE id = 'c-secret-1' AND status != 'sent'"),
        60,
        "the bus answered the command",
    )
    on_disk = "".join(p.read_text() for p in live.log_file.parent.glob("agent.log*"))
    assert "c-secret-1" in on_disk  # the line is there...
    assert PASSWORD not in on_disk  # ...without the password
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in on_disk
    done = live.logs("--grep", "c-secret-1")
    assert done.returncode == 0, done.stderr
    assert "c-secret-1" in done.stdout and "[REDACTED]" in done.stdout
    assert PASSWORD not in done.stdout
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in done.stdout
    # grep runs on the redacted text: asking for the secret finds nothing
    probe = live.logs("--grep", PASSWORD)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout == ""


def test_a_huge_log_is_capped_keeping_the_newest_lines(live: Live) -> None:
    done = live.logs("--since", "1h")
    assert done.returncode == 0, done.stderr
    assert "older ones were left out" in done.stderr
    fillers = [line for line in done.stdout.splitlines() if " FILLER " in line]
    numbers = [int(line.split(" FILLER ")[1][:6]) for line in fillers]
    assert numbers and numbers == sorted(numbers)  # oldest first, as in the file
    assert numbers[-1] == FILLER_LINES - 1  # the newest filler line is kept
    assert numbers[0] > 0 and len(numbers) < FILLER_LINES  # the oldest ones are not
    assert f"agent {BUS} starting" in done.stdout  # newer than every filler line


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("--since", "30x"), "no duration"),
        (("--since", "8d"), "at most 7 days"),
        (("--since", "0"), "more than 0"),
        (("--grep", "x" * 201), "at most 200 characters"),
        (("--timeout", "-1"), "more than 0"),
    ],
)
def test_hostile_arguments_are_refused_with_a_reason(
    live: Live, args: tuple[str, ...], why: str
) -> None:
    done = live.logs(*args)
    assert done.returncode == 2
    assert why in done.stderr


def test_a_bus_refuses_a_logs_command_out_of_bounds_with_the_reason(live: Live) -> None:
    raw_command(live, "c-hostile-1", "logs", {"grep": "x" * 300, "since_s": 1e12})
    db = live.procs.workdir / "central.sqlite"
    wait_for(
        lambda: rows(db, "SELECT 1 FROM commands WHERE id = 'c-hostile-1' AND status != 'sent'"),
        60,
        "the bus answered",
    )
    done = live.logs("--answer", "c-hostile-1")
    assert done.returncode == 1
    assert "failed" in done.stderr and ("grep" in done.stderr or "since_s" in done.stderr)


def test_central_refuses_a_logs_command_out_of_bounds(live: Live) -> None:
    done = live.cli("command", BUS, "logs", "--arg", "since_s=99999999")
    assert done.returncode == 2
    assert "since_s" in done.stderr


def test_a_bus_that_does_not_answer_is_said_and_exits_non_zero(live: Live) -> None:
    done = live.cli("logs", "bus-nobody", "--timeout", "2")
    assert done.returncode == 1
    assert "bus-nobody did not answer within 2 s (offline?)" in done.stderr
    assert "--answer" in done.stderr
    assert done.stdout == ""
