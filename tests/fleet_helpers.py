"""Helpers for tests against a live pipeline: waiting, reading fleet state and ground truth."""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import itertools
import json
import queue
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker, run_mosquitto
from central.config import CentralConfig
from onboard.link.outbox import Outbox
from protocols import codec, topics
from protocols.geo import haversine_m
from protocols.schemas import FleetEntry, Position, ReportedState, TelemetryRecord

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, every: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []


def first_message(broker: Broker, topic: str, timeout: float) -> bytes:
    """The payload of the first message on `topic` (a retained one comes at once); queue.Empty
    after `timeout` s."""
    got: queue.Queue[bytes] = queue.Queue()
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(topic)
    client.on_message = lambda _c, _u, m: got.put(bytes(m.payload))
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        return got.get(timeout=timeout)
    finally:
        client.loop_stop()
        client.disconnect()


class FleetWatcher:
    """Follows the retained fleet entries that central publishes, as a dashboard does."""

    def __init__(self, broker: Broker) -> None:
        self.entries: dict[str, FleetEntry] = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topics.all_buses(topics.Kind.FLEET))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        entry = codec.decode(FleetEntry, msg.payload)
        self.entries[entry.bus] = entry

    def online(self) -> set[str]:
        return {b for b, e in dict(self.entries).items() if e.online}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class ReportedLog:
    """Every reported state one bus publishes, in order (the retained one first): the bus's
    own account of what it ran when, by its clock (`ReportedState.t`)."""

    def __init__(self, broker: Broker, bus: str) -> None:
        self.states: list[ReportedState] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topics.reported(bus), qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self.states.append(codec.decode(ReportedState, msg.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Truth:
    """A simulator's ground-truth log, looked up by time."""

    def __init__(self, path: Path) -> None:
        points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        points.sort(key=lambda p: p["t"])
        self.times = [p["t"] for p in points]
        self.points = points

    def at(self, t: float, tolerance_s: float = 0.06) -> dict[str, Any] | None:
        i = bisect.bisect_left(self.times, t)
        near = [j for j in (i - 1, i) if 0 <= j < len(self.times)]
        best = min(near, key=lambda j: abs(self.times[j] - t), default=None)
        if best is None or abs(self.times[best] - t) > tolerance_s:
            return None
        return self.points[best]

    def error_m(self, t: float, lat: float, lon: float) -> float | None:
        p = self.at(t)
        return None if p is None else haversine_m(lat, lon, p["lat"], p["lon"])


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
            f"[mqtt]\nport = {self.port}\nbackoff_max_s = 2.0\ninsecure_dev_broker = true\n"
            '[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
        )
        return self.start(name or bus, "agent", "--config", str(config))

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def prefill(data_dir: Path, n: int, *, created: float, spacing: float = 1.0) -> list[int]:
    """Records the bus wrote while nobody was listening (an outage, a night in the depot)."""
    box = Outbox(data_dir / "agent.sqlite")
    seqs = []
    with box.transaction():
        for i in range(n):
            t = created + i * spacing
            pos = Position(lat=-16.9, lon=145.7 + i * 1e-5)
            seqs.append(
                box.put(
                    "telemetry",
                    lambda seq, t=t, pos=pos: codec.encode(TelemetryRecord(seq=seq, t=t, pos=pos)),
                    created=t,
                )
            )
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


def arrival_inversions(db: Path, bus: str, table: str = "telemetry") -> list[tuple[int, int]]:
    """(seq, next seq) pairs of the bus's records that central stored in the other order.

    `received` is central's clock at the commit of each ingest batch: it shows the order in
    which records arrived, which nothing in the records themselves (their `t`) can fake."""
    found = rows(db, f"SELECT seq, received FROM {table} WHERE bus = ? ORDER BY seq", bus)
    return [(a, b) for (a, ra), (b, rb) in itertools.pairwise(found) if rb < ra]


def outbox_state(data_dir: Path) -> tuple[set[int], set[int]]:
    """(every sequence number the bus's outbox holds, those still waiting for a receipt).

    Read-only: the agent may be running and writing."""
    found = rows(data_dir / "agent.sqlite", "SELECT seq, stored FROM outbox")
    return {seq for seq, _ in found}, {seq for seq, stored in found if not stored}


def wait_all_stored(workdir: Path, bus: str, expected: list[int], timeout: float = 90) -> None:
    """Until central has exactly what the test wrote (`expected`) plus the events the agent
    wrote itself since (it says `no_timetable` at start, say), each once; nothing else."""

    def wanted() -> set[int]:
        return set(expected) | agent_events(workdir / bus)

    def done() -> bool:
        return len(stored_seqs(workdir, bus)) >= len(wanted())

    try:
        wait_for(done, timeout, f"{len(expected)} records of {bus} at central")
    finally:
        got = stored_seqs(workdir, bus)
        # Telemetry and events share the bus's numbers: one number in both tables is a fault.
        assert len(got) == len(set(got)), "a sequence number stored as telemetry and as event"
        want = wanted()
        missing = sorted(want - set(got))
        extra = sorted(set(got) - want)
        assert (missing[:10], extra[:10]) == ([], []), f"{len(missing)} missing, {len(extra)} extra"


def agent_events(data_dir: Path) -> set[int]:
    """The sequence numbers of the events in an agent's outbox (none if it has none)."""
    if not (data_dir / "agent.sqlite").exists():
        return set()
    box = Outbox(data_dir / "agent.sqlite")
    try:
        return {r[0] for r in box.db.execute("SELECT seq FROM outbox WHERE kind != 'telemetry'")}
    finally:
        box.close()


@contextmanager
def broker_on(workdir: Path, port: int) -> Iterator[Broker]:
    with run_mosquitto(workdir, port=port) as b:
        yield b


@contextmanager
def central_running(config: CentralConfig, timeout: float = 20.0) -> Iterator[Path]:
    """`busfleet central serve`'s service in a thread of this test (its own event loop), until
    the block ends; yields its database. CLI tools that ask central need one running."""
    import asyncio
    import threading

    from central.service.service import CentralService

    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        service = CentralService(config)
        state["service"] = service
        state["task"] = asyncio.current_task()
        started.set()
        await service.run()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to the test below
            state["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="central", daemon=True)
    thread.start()
    try:
        started.wait(timeout)
        wait_for(
            lambda: "error" in state or state["service"].ready.is_set(), timeout, "central ready"
        )
        if "error" in state and not isinstance(state["error"], asyncio.CancelledError):
            raise AssertionError(f"central failed: {state['error']!r}")
        yield Path(config.db)
    finally:
        task = state.get("task")
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)
        thread.join(10)
        loop.close()


def central_config(broker: Broker, db: Path | str, **changes: Any) -> CentralConfig:
    """A central config for a test broker (no credentials) and database (a SQLite file, or a
    PostgreSQL URL)."""
    return dataclasses.replace(
        CentralConfig(), db=str(db), mqtt_host=broker.host, mqtt_port=broker.port, **changes
    )


def cli_conn(broker: Broker, db: Path | str) -> list[str]:
    """The command-line options that point a central tool at this broker and database."""
    return ["--db", str(db), "--mqtt-host", broker.host, "--mqtt-port", str(broker.port)]


def wait_central_online(broker: Broker, timeout: float = 30.0) -> None:
    """Until a central worker's retained presence says online (the CLI tools ask only then)."""
    from protocols.requests import CentralPresence

    online: set[str] = set()

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.payload and codec.decode(CentralPresence, msg.payload).online:
            online.add(msg.topic)

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topics.all_central_presence(), qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        wait_for(lambda: online, timeout, "central online")
    finally:
        client.loop_stop()
        client.disconnect()
