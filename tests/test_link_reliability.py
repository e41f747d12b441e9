"""Nothing lost, nothing twice: the fleet link through broker, agent and central failures.

Real mosquitto, `busfleet central serve` and `busfleet agent` processes, real SQLite files.
Each test ends by checking that central holds every sequence number the bus wrote exactly
once (the (bus, seq) primary key makes a duplicate impossible to store twice, so "exactly
once" is: the stored set equals the written set, minus what the budget policy reported).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from busfleet.broker import Broker, free_port, run_mosquitto
from onboard.outbox import Outbox
from protocols import codec
from protocols.ranges import expand
from protocols.schemas import Position, TelemetryRecord
from tests.fleet_helpers import rows, wait_for


class Procs:
    """Child processes of a test; all killed at the end."""

    def __init__(self, workdir: Path, broker_port: int) -> None:
        self.workdir = workdir
        self.port = broker_port
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "busfleet.cli", *args], stderr=log, stdout=subprocess.DEVNULL
        )
        self.procs.append(proc)
        return proc

    def central(self, name: str = "central", *extra: str) -> subprocess.Popen[bytes]:
        return self.start(
            name,
            "central",
            "serve",
            "--db",
            str(self.workdir / "central.sqlite"),
            "--mqtt-port",
            str(self.port),
            *extra,
        )

    def agent(self, bus: str, name: str | None = None) -> subprocess.Popen[bytes]:
        config = self.workdir / f"{bus}.toml"
        config.write_text(
            f'[bus]\nid = "{bus}"\ndata_dir = "{self.workdir / bus}"\n'
            f"[mqtt]\nport = {self.port}\nbackoff_max_s = 2.0\n"
            '[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
        )
        return self.start(name or bus, "agent", "--config", str(config))

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def port() -> int:
    return free_port()


@contextmanager
def broker_on(workdir: Path, port: int) -> Iterator[Broker]:
    with run_mosquitto(workdir, port=port) as b:
        yield b


@pytest.fixture
def procs(tmp_path: Path, port: int) -> Iterator[Procs]:
    p = Procs(tmp_path, port)
    yield p
    p.close()


def prefill(data_dir: Path, n: int, *, created: float, spacing: float = 1.0) -> list[int]:
    """Records the bus wrote while nobody was listening (an outage, a night in the depot)."""
    box = Outbox(data_dir / "agent.sqlite")
    seqs = []
    with box.transaction():
        for i in range(n):
            t = created + i * spacing
            record = TelemetryRecord(seq=0, t=t, pos=Position(lat=-16.9, lon=145.7 + i * 1e-5))
            seqs.append(box.append("telemetry", codec.encode(record), created=t))
    box.close()
    return seqs


def stored_seqs(workdir: Path, bus: str) -> list[int]:
    db = workdir / "central.sqlite"
    tele = rows(db, "SELECT seq FROM telemetry WHERE bus = ?", bus)
    events = rows(db, "SELECT seq FROM events WHERE bus = ?", bus)
    return sorted(r[0] for r in tele + events)


def written_seqs(data_dir: Path) -> list[int]:
    box = Outbox(data_dir / "agent.sqlite")
    try:
        return [r[0] for r in box.db.execute("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        box.close()


def wait_all_stored(workdir: Path, bus: str, expected: list[int], timeout: float = 90) -> None:
    def done() -> bool:
        return len(stored_seqs(workdir, bus)) >= len(expected)

    try:
        wait_for(done, timeout, f"{len(expected)} records of {bus} at central")
    finally:
        got = stored_seqs(workdir, bus)
        assert len(got) == len(set(got))
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        assert (missing[:10], extra[:10]) == ([], []), f"{len(missing)} missing, {len(extra)} extra"


def test_a_bus_offline_for_an_hour_sends_its_backlog_in_order_as_backfill(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    seqs = prefill(tmp_path / "bus-a", 3600, created=time.time() - 3600)
    with broker_on(tmp_path / "mq", port):
        procs.central()
        procs.agent("bus-a")
        wait_all_stored(tmp_path, "bus-a", seqs)
    db = tmp_path / "central.sqlite"
    assert rows(db, "SELECT COUNT(*) FROM telemetry WHERE backfill = 0") == [(0,)]
    order = [r[0] for r in rows(db, "SELECT t FROM telemetry WHERE bus = 'bus-a' ORDER BY seq")]
    assert order == sorted(order)


def test_the_broker_killed_and_restarted_mid_stream_loses_nothing(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    seqs = prefill(tmp_path / "bus-a", 6000, created=time.time() - 6000)
    with broker_on(tmp_path / "mq", port):
        procs.central()
        procs.agent("bus-a")
        wait_for(lambda: len(stored_seqs(tmp_path, "bus-a")) > 200, 60, "the stream to start")
    # The broker is gone (no persistence: its queues and retained messages with it).
    time.sleep(1.0)
    assert len(stored_seqs(tmp_path, "bus-a")) < len(seqs), "the stream ended before the outage"
    with broker_on(tmp_path / "mq", port):
        wait_all_stored(tmp_path, "bus-a", seqs)


def test_an_agent_killed_mid_batch_resumes_without_loss_or_duplicates(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    seqs = prefill(tmp_path / "bus-a", 5000, created=time.time() - 5000)
    with broker_on(tmp_path / "mq", port):
        procs.central()
        first = procs.agent("bus-a", "agent-1")
        wait_for(lambda: len(stored_seqs(tmp_path, "bus-a")) > 100, 60, "the stream to start")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(stored_seqs(tmp_path, "bus-a")) < len(seqs)
        procs.agent("bus-a", "agent-2")
        wait_all_stored(tmp_path, "bus-a", seqs)


def test_central_killed_mid_ingest_gets_everything_after_its_restart(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    seqs = prefill(tmp_path / "bus-a", 5000, created=time.time() - 5000)
    with broker_on(tmp_path / "mq", port):
        central = procs.central("central-1")
        procs.agent("bus-a")
        wait_for(lambda: len(stored_seqs(tmp_path, "bus-a")) > 100, 60, "the stream to start")
        central.send_signal(signal.SIGKILL)
        central.wait()
        assert len(stored_seqs(tmp_path, "bus-a")) < len(seqs)
        procs.central("central-2")
        wait_all_stored(tmp_path, "bus-a", seqs)


def test_an_outbox_over_its_budget_drops_only_what_it_reports(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    now = time.time()
    prefill(tmp_path / "bus-a", 4000, created=now - 8000, spacing=2.0)
    config_budget_mb = 0.2  # about 1,500 of these records
    with broker_on(tmp_path / "mq", port):
        procs.central()
        config = tmp_path / "bus-a.toml"
        procs.agent("bus-a")  # writes the config; restart it with the budget
        procs.procs[-1].kill()
        procs.procs[-1].wait()
        config.write_text(config.read_text() + f"[outbox]\nbudget_mb = {config_budget_mb}\n")
        procs.start("bus-a-budget", "agent", "--config", str(config))

        def dropped() -> list[int]:
            notes = rows(
                tmp_path / "central.sqlite",
                "SELECT data FROM events WHERE bus = 'bus-a' AND kind = 'dropped'",
            )
            found: list[int] = []
            for (data,) in notes:
                text = codec.decode_json(data)["ranges"]
                found += expand(tuple(map(int, r.split("-"))) for r in text.split(","))  # type: ignore[misc]
            return found

        wait_for(dropped, 60, "the dropped note at central")
        written = written_seqs(tmp_path / "bus-a")
        wait_all_stored(tmp_path, "bus-a", written)
    lost = dropped()
    got = set(stored_seqs(tmp_path, "bus-a"))
    assert lost and not (set(lost) & got)
    assert got | set(lost) == set(range(1, max(got) + 1)), "a gap nobody reported"


def test_two_ingest_workers_on_a_shared_subscription_store_everything_once(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    buses = ("bus-a", "bus-b", "bus-c")
    written = {b: prefill(tmp_path / b, 1500, created=time.time() - 1500) for b in buses}
    with broker_on(tmp_path / "mq", port):
        procs.central("worker-1", "--group", "ingest", "--client-id", "central-1")
        procs.central("worker-2", "--group", "ingest", "--client-id", "central-2")
        for b in buses:
            procs.agent(b)
        for b in buses:
            wait_all_stored(tmp_path, b, written[b])
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in (1, 2)]
    assert all("central subscribed" in text for text in logs)
    db = tmp_path / "central.sqlite"
    for b in buses:
        order = [r[0] for r in rows(db, "SELECT t FROM telemetry WHERE bus = ? ORDER BY seq", b)]
        assert order == sorted(order), f"{b}: stored order differs from the bus's order"
