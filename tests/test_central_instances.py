"""Several central instances are one system (issue 15), live: two `central serve --group`
processes on one broker and one database, three buses (real agents: an outbox that resends
what no receipt covered), one instance stalled, one killed with SIGKILL mid-ingest, the leader
killed too, each restarted.

What one system means here: every sequence number of every bus stored exactly once and none
missing; the resends that the kills caused counted as duplicates and dropped; one fleet view
per bus (its entries, whoever publishes them, never go back: two instances each counting its
own share of the records would publish counts that alternate); fleet entries keep coming
within seconds of the leader's death; one alarm row and one retained alarm per condition.
Runs on SQLite and on PostgreSQL (`central_db`).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker, free_port
from central.store.backend import is_postgres_url
from protocols import codec, topics
from protocols.requests import DispatchReply
from protocols.schemas import Alarm, CentralStats, DesiredState, FleetEntry
from tests.fleet_helpers import Procs, broker_on, prefill, rows, wait_for, written_seqs

BUSES = ("bus-a", "bus-b", "bus-c")
GROUP = "city"
BACKLOG = 3000  # records per bus written before the instances start: the load of the kills
REPO = Path(__file__).resolve().parent.parent
FLEET_PREFIX = topics.all_buses(topics.Kind.FLEET).removesuffix("+")
ALARM_PREFIX = topics.all_alarms().removesuffix("+")
REPLIES = topics.all_dispatch_requests().removesuffix("/request") + "/reply"
DESIRED_PREFIX = topics.all_buses(topics.Kind.DESIRED).split("+", 1)[0]
NMEA = REPO / "data" / "nmea" / "ublox-8.log"  # a real receiver's fixes, replayed in a loop


def query(db: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql` (placeholders `?`) on either backend; none while the schema is missing."""
    if not is_postgres_url(db):
        return rows(Path(db), sql, *params)
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()
    except psycopg.errors.UndefinedTable:
        return []


def leader(db: str) -> str | None:
    found = query(db, "SELECT holder, expires FROM leases WHERE name = 'live'")
    return str(found[0][0]) if found and found[0][1] > time.time() else None


def stored(db: str, bus: str) -> list[int]:
    """The bus's sequence numbers at central: telemetry and events share them."""
    sql = "SELECT seq FROM telemetry WHERE bus = ? UNION ALL SELECT seq FROM events WHERE bus = ?"
    return [int(r[0]) for r in query(db, sql, bus, bus)]


class Watch:
    """What dashboards see: fleet entries in arrival order, each instance's stats (counters
    summed over its restarts), retained alarms."""

    def __init__(self, broker: Broker) -> None:
        self.lock = threading.Lock()
        self.fleet: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
        self.stats_t: dict[str, float] = {}
        self.current: dict[str, dict[str, int]] = {}
        self.done: collections.Counter[str] = collections.Counter()
        self.alarms: dict[str, Alarm] = {}
        self.replies: list[DispatchReply] = []
        self.desired: list[tuple[str, int]] = []  # (bus, version) of every desired document
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(
            [
                (topics.all_buses(topics.Kind.FLEET), 0),
                (topics.all_central_instance_stats(), 0),
                (topics.all_alarms(), 0),
                (REPLIES, 1),
                (topics.all_buses(topics.Kind.DESIRED), 1),
            ]
        )
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            if msg.topic.startswith(FLEET_PREFIX):
                entry = codec.decode(FleetEntry, msg.payload)
                self.fleet[entry.bus].append((time.monotonic(), entry.records))
            elif msg.topic.startswith(ALARM_PREFIX):
                alarm_id = topics.alarm_id(msg.topic)
                if msg.payload:
                    self.alarms[alarm_id] = codec.decode(Alarm, msg.payload)
                else:
                    self.alarms.pop(alarm_id, None)
            elif msg.topic.endswith(REPLIES.rsplit("+", 1)[1]):
                self.replies.append(codec.decode(DispatchReply, msg.payload))
            elif msg.topic.startswith(DESIRED_PREFIX):
                desired = codec.decode(DesiredState, msg.payload)
                self.desired.append((desired.bus, desired.version))
            elif msg.payload:
                who = msg.topic.rsplit("/", 1)[1]
                stats = codec.decode(CentralStats, msg.payload)
                if stats.t <= self.stats_t.get(who, 0.0):
                    return
                self.stats_t[who] = stats.t
                before = self.current.get(who, {})
                if stats.counters.get("messages", 0) < before.get("messages", 0):
                    self.done.update(before)  # a new process of this instance counts from zero
                self.current[who] = dict(stats.counters)

    def total(self, counter: str) -> int:
        with self.lock:
            return self.done[counter] + sum(c.get(counter, 0) for c in self.current.values())

    def stats_after(self, who: str, t: float) -> bool:
        with self.lock:
            return self.stats_t.get(who, 0.0) > t

    def records_since(self, t: float) -> int:
        """Fleet entries received after `t` (monotonic) that counted more records than
        every entry of their bus before `t`."""
        with self.lock:
            grew = 0
            for entries in self.fleet.values():
                before = max((n for at, n in entries if at <= t), default=-1)
                grew += sum(1 for at, n in entries if at > t and n > before)
            return grew

    def going_back(self) -> list[tuple[str, int, int]]:
        """(bus, records, then records) wherever a bus's entry counted fewer than the one
        before: two views of one bus."""
        with self.lock:
            out = []
            for bus, entries in self.fleet.items():
                counts = [n for _at, n in entries]
                out += [(bus, a, b) for a, b in itertools.pairwise(counts) if b < a]
            return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Uplink:
    """A TCP relay between one central instance and the broker whose upstream direction a test
    can hold: from `hold()` on, what the instance sends (its receipts above all) is read and
    kept here instead of reaching the broker, while the broker's messages still reach it. So
    the instance stores records whose receipts the buses never get, as one that dies between
    its commit and its receipts."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.held = bytearray()
        self.holding = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self.holding.set()

    def holds(self, data: bytes) -> bool:
        with self.lock:
            return data in self.held

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if up and self.holding.is_set():
                    with self.lock:
                        self.held += data
                else:
                    dst.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class Group:
    """The central instances of the group, each started again under its own client id."""

    def __init__(self, procs: Procs, db: str) -> None:
        self.procs = procs
        self.db = db
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = collections.Counter[str]()

    def start(self, who: str, port: int | None = None) -> None:
        """Start `who` again; on the broker's port unless `port` (an Uplink's) is given."""
        self.starts[who] += 1
        port = self.procs.port if port is None else port
        self.running[who] = self.procs.start(
            f"{who}-{self.starts[who]}",
            *("central", "serve", "--db", self.db, "--mqtt-port", str(port)),
            *("--group", GROUP, "--client-id", who, "--http-port", "0"),
        )

    def leads(self, who: str) -> bool:
        """`who` holds the live role; fails at once, with its log, if an instance has ended."""
        for name, proc in self.running.items():
            if proc.poll() is not None and proc.returncode != -signal.SIGKILL:
                log = self.procs.workdir / f"{name}-{self.starts[name]}.log"
                tail = log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"{name} ended ({proc.returncode}):\n{tail}")
        return leader(self.db) == who

    def signal(self, who: str, sig: signal.Signals) -> None:
        self.running[who].send_signal(sig)
        if sig is signal.SIGKILL:
            self.running[who].wait()


def start_bus(procs: Procs, bus: str) -> subprocess.Popen[bytes]:
    """A bus with a live GPS (a record every 0.2 s) and its backlog, resending what no receipt
    covered after the agent's receipt timeout."""
    config = procs.workdir / f"{bus}.toml"
    config.write_text(
        f'[bus]\nid = "{bus}"\ndata_dir = "{procs.workdir / bus}"\n'
        f"[mqtt]\nport = {procs.port}\nbackoff_max_s = 1.0\ninsecure_dev_broker = true\n"
        f'[gps]\nsource = "replay"\nreplay_path = "{NMEA}"\n[can]\ninterface = "none"\n'
        "[telemetry]\ninterval_s = 0.2\nsend_every_s = 0.5\n"
        "[display]\nenabled = false\n[ads]\nenabled = false\n"
    )
    return procs.start(bus, "agent", "--config", str(config))


def resent(workdir: Path) -> bool:
    """Some bus sent records again: no receipt came for them in time."""
    return any(
        "sending them again" in (workdir / f"{bus}.log").read_text(errors="replace")
        for bus in BUSES
    )


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path, free_port())
    try:
        yield p
    finally:
        p.close()


def test_two_instances_killed_and_restarted_store_every_record_once_and_keep_one_truth(
    tmp_path: Path, procs: Procs, central_db: str
) -> None:
    created = time.time() - BACKLOG * 0.1
    for bus in BUSES:
        prefill(tmp_path / bus, BACKLOG, created=created, spacing=0.1)
    group = Group(procs, central_db)
    uplink = Uplink(procs.port)
    with broker_on(tmp_path / "mq", procs.port) as broker:
        watch = Watch(broker)
        try:
            group.start("central-a", uplink.port)
            wait_for(lambda: group.leads("central-a"), 60, "central-a to lead")
            group.start("central-b")
            wait_for(lambda: watch.stats_after("central-b", 0), 60, "central-b's stats")
            buses = {bus: start_bus(procs, bus) for bus in BUSES}

            def total_stored() -> int:
                return sum(len(stored(central_db, b)) for b in BUSES)

            wait_for(lambda: total_stored() > 1000, 60, "the ingest to start")

            # The leader dies mid-ingest (SIGKILL) holding records it stored and never
            # receipted: its receipts stopped on their way (Uplink.hold) after it stored some.
            uplink.hold()
            receipts = [topics.stored(b).encode() for b in BUSES]
            wait_for(lambda: any(uplink.holds(r) for r in receipts), 60, "central-a to store more")
            group.signal("central-a", signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: group.leads("central-b"), 60, "central-b to take the live role")
            wait_for(lambda: watch.records_since(killed) > 0, 30, "central-b's fleet view")
            # The buses send central-a's unreceipted records again; central-b had some of them
            # from central-a's commits: it counts and drops those.
            wait_for(lambda: resent(tmp_path), 60, "a bus to send records again")
            wait_for(lambda: watch.total("duplicates") > 0, 60, "the resends counted as such")
            back = time.time()
            group.start("central-a")
            wait_for(lambda: watch.stats_after("central-a", back), 60, "central-a back")

            # The leader dies again (SIGKILL): the other takes the live role within the lease.
            group.signal("central-b", signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: group.leads("central-a"), 60, "central-a to lead again")
            wait_for(lambda: watch.records_since(killed) > 0, 30, "central-a's fleet view")
            back = time.time()
            group.start("central-b")
            wait_for(lambda: watch.stats_after("central-b", back), 60, "central-b back")

            # Every record written so far reaches central, each once, nothing else.
            written = {bus: written_seqs(tmp_path / bus) for bus in BUSES}

            def all_there() -> bool:
                return all(set(written[b]) <= set(stored(central_db, b)) for b in BUSES)

            wait_for(all_there, 120, "every record written so far at central")
            for bus in BUSES:
                got = stored(central_db, bus)
                assert len(got) == len(set(got)), f"{bus}: a sequence number stored twice"
                extra = set(got) - set(written_seqs(tmp_path / bus))
                assert not extra, f"{bus}: {len(extra)} records at central that it never wrote"
                counted = query(
                    central_db,
                    "SELECT COUNT(*), COUNT(DISTINCT seq) FROM telemetry WHERE bus = ?",
                    bus,
                )
                assert counted[0][0] == counted[0][1]
            assert watch.total("duplicates") > 0

            # One request, one answer, one desired document of its version.
            conn = ("--db", central_db, "--mqtt-port", str(procs.port))
            argv = ["central", "assign", "bus-a", "--route", "R1", *conn]
            assign = subprocess.run(
                [sys.executable, "-m", "busfleet.cli", *argv],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert assign.returncode == 0, assign.stderr
            version = int(assign.stdout.split("version ")[1].split()[0])
            wait_for(lambda: ("bus-a", version) in watch.desired, 30, "the desired document")
            settled = time.time() + 3  # both instances have run their sync since, and more
            wait_for(
                lambda: all(watch.stats_after(w, settled) for w in ("central-a", "central-b")),
                30,
                "both instances past the request",
            )
            with watch.lock:
                assert len(watch.replies) == 1, watch.replies
                assert watch.desired.count(("bus-a", version)) == 1, watch.desired

            # One condition, one alarm: bus-c goes silent (its last will says offline).
            buses["bus-c"].kill()
            buses["bus-c"].wait()

            def offline_alarms() -> list[tuple[Any, ...]]:
                sql = "SELECT id FROM alarms WHERE bus = 'bus-c' AND kind = 'offline'"
                return query(central_db, sql)

            wait_for(offline_alarms, 60, "bus-c's offline alarm")
            settled = time.time() + 3  # both instances have ticked since, several times
            wait_for(
                lambda: all(watch.stats_after(w, settled) for w in ("central-a", "central-b")),
                30,
                "both instances past the alarm",
            )
            assert len(offline_alarms()) == 1
            with watch.lock:
                retained = [
                    a for a in watch.alarms.values() if (a.bus, a.kind) == ("bus-c", "offline")
                ]
            assert len(retained) == 1, retained

            # One fleet view per bus, all along.
            assert watch.going_back() == []
            assert set(watch.fleet) == set(BUSES)
        finally:
            watch.close()
            uplink.close()
