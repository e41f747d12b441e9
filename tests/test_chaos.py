"""Chaos: four simulated buses while the broker, central and the agents are killed at random.

The production broker config (TLS, ACL, persistence), central and four buses, each a real
agent in its own process on simulated GPS and CAN (tests/chaos_bus.py), with a backlog from a
night in the depot. For CHAOS_S seconds, at random moments (seeded; the seed is printed, set
BUSFLEET_CHAOS_SEED to replay a run), one of them is killed with SIGKILL and started again
after a random pause; once, central is stalled (SIGSTOP) past the buses' receipt timeout, so
that resends are certain. Then everything is up and the link drains.

At the end, per bus, from the bus's outbox (agent.sqlite) and central's database: every
sequence number the bus wrote is at central exactly once or still waiting in its outbox;
nothing at central that the bus did not write; nothing the bus forgot (a receipt) that central
does not have. Central's `duplicates` counter shows the resends arrived and were dropped.

Run it alone: `.venv/bin/pytest -m chaos -s` (about 2.5 minutes).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from busfleet.broker.provision import agent_toml
from busfleet.broker.secure import SecureBroker, run_secure_mosquitto
from onboard.config import TelemetrySection
from tests.conftest import REPO
from tests.fleet_helpers import outbox_state, prefill, stored_seqs, wait_for
from tests.secure_fleet import BrokerLife, SecureProcs, StatsWatcher, bus_config

BUSES = ("bus-1", "bus-2", "bus-3", "bus-4")
CHAOS_S = 120.0  # killing; then the drain. The whole test stays under 3 minutes.
STALL_S = 18.0  # longer than the buses' receipt timeout (onboard/link/mqtt.py, 15 s)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


class Chaos:
    """The processes of the run, each of which can be killed and started again."""

    def __init__(self, workdir: Path, broker: SecureBroker, seed: int) -> None:
        self.workdir = workdir
        self.broker = broker
        self.life = BrokerLife(broker)
        self.procs = SecureProcs(workdir, broker)
        self.central: subprocess.Popen[bytes] | None = None
        self.buses: dict[str, subprocess.Popen[bytes]] = {}
        self.seed = seed
        self.started = time.monotonic()
        self.journal = (workdir / "chaos.log").open("a")

    def say(self, text: str) -> None:
        line = f"[chaos {time.monotonic() - self.started:6.1f} s] {text}"
        print(line, flush=True)
        self.journal.write(line + "\n")
        self.journal.flush()

    def start_central(self) -> None:
        self.central = self.procs.central()

    def start_bus(self, bus: str) -> None:
        config = bus_config(
            self.broker,
            bus,
            self.workdir / bus,
            telemetry=TelemetrySection(interval_s=0.5, send_every_s=1.0),
        )
        path = self.workdir / f"{bus}.toml"
        path.write_text(agent_toml(config))
        log = (self.workdir / f"{bus}.log").open("ab")
        seed = str(self.seed % 1000 + BUSES.index(bus))
        self.buses[bus] = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos_bus", "--config", str(path), "--seed", seed],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

    def kill(self, victim: str) -> None:
        if victim == "broker":
            self.life.kill()
            return
        proc = self.central if victim == "central" else self.buses[victim]
        assert proc is not None
        assert proc.poll() is None, f"{victim} had exited by itself ({proc.returncode})"
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def start(self, victim: str) -> None:
        if victim == "broker":
            self.life.start()
        elif victim == "central":
            self.start_central()
        else:
            self.start_bus(victim)

    def stall_central(self) -> None:
        assert self.central is not None
        self.central.send_signal(signal.SIGSTOP)
        try:
            time.sleep(STALL_S)
        finally:
            self.central.send_signal(signal.SIGCONT)

    def close(self) -> None:
        for proc in self.buses.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.procs.close()
        self.life.close()
        self.journal.close()


@pytest.fixture
def seed() -> int:
    chosen = os.environ.get("BUSFLEET_CHAOS_SEED")
    value = int(chosen) if chosen else random.SystemRandom().randrange(2**32)
    print(f"chaos seed {value} (replay: BUSFLEET_CHAOS_SEED={value})")
    return value


@pytest.fixture
def chaos(tmp_path: Path, seed: int) -> Iterator[Chaos]:
    with run_secure_mosquitto(tmp_path / "mq", buses=BUSES) as broker:
        c = Chaos(tmp_path, broker, seed)
        try:
            yield c
        finally:
            c.close()


def run_chaos(chaos: Chaos, rng: random.Random) -> None:
    stall_at = rng.uniform(15.0, CHAOS_S - STALL_S - 30.0)
    stalled = False
    end = time.monotonic() + CHAOS_S
    chaos.say(f"seed {chaos.seed}; central stalls at about {stall_at:.0f} s")
    while time.monotonic() < end:
        time.sleep(rng.uniform(1.0, 7.0))
        if not stalled and time.monotonic() - chaos.started >= stall_at:
            stalled = True
            chaos.say(f"SIGSTOP central for {STALL_S:.0f} s")
            chaos.stall_central()
            chaos.say("SIGCONT central")
            continue
        victim = rng.choice(["broker", "central", *BUSES])
        down = rng.uniform(0.0, 4.0)
        chaos.say(f"SIGKILL {victim}, down {down:.1f} s")
        chaos.kill(victim)
        time.sleep(down)
        chaos.start(victim)
    assert stalled, "the stall never came"


def test_four_buses_through_random_sigkills_lose_nothing_and_store_nothing_twice(
    tmp_path: Path, chaos: Chaos, seed: int
) -> None:
    rng = random.Random(seed)
    for bus in BUSES:  # a night in the depot: a backlog to stream while things die
        prefill(tmp_path / bus, 2000, created=time.time() - 3600)
    with contextlib.closing(StatsWatcher(chaos.broker)) as stats:
        chaos.start_central()
        for bus in BUSES:
            chaos.start_bus(bus)
        wait_for(stats.seen, 60, "central's first stats")
        run_chaos(chaos, rng)
        chaos.say("chaos over: everything up, draining")

        # Drained: everything the buses wrote until now reaches central.
        marks = {bus: max(outbox_state(tmp_path / bus)[0]) for bus in BUSES}

        def drained() -> bool:
            return all(set(range(1, marks[b] + 1)) <= set(stored_seqs(tmp_path, b)) for b in BUSES)

        wait_for(drained, 60, f"every record written before the end at central (seed {seed})")
        chaos.say("drained")
        duplicates = wait_for(
            lambda: stats.total("duplicates"), 30, f"central to count duplicates (seed {seed})"
        )
        chaos.say(
            f"central dropped {duplicates} duplicates over {stats.restarts_seen + 1} processes; "
            f"broker killed {chaos.life.kills} times"
        )
    for proc in chaos.buses.values():  # the outboxes hold still while they are read
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for bus in BUSES:
        written, waiting = outbox_state(tmp_path / bus)
        at_central = stored_seqs(tmp_path, bus)  # read after the outbox: only more, not less
        stored = set(at_central)
        assert written == set(range(1, max(written) + 1)), f"{bus}: the outbox lost a number"
        assert marks[bus] <= max(written)
        assert sorted(stored - written)[:10] == [], f"{bus}: at central, never written"
        assert sorted(written - stored - waiting)[:10] == [], f"{bus}: lost (seed {seed})"
        assert sorted((written - waiting) - stored)[:10] == [], f"{bus}: receipt, not stored"
        assert len(at_central) == len(stored), f"{bus}: a number as telemetry and as event"
    assert duplicates > 0
    assert chaos.central is not None and chaos.central.poll() is None, "central died"
