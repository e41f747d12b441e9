"""Central ingest at city scale: N simulated buses at 1 Hz against `busfleet central serve`.

One mosquitto (development config) and a few publisher processes (bench/ingest_load.py: each
one paho connection publishing for its share of the buses, one record per bus per second in
compact TelemetryBatch messages of `--batch` records, QoS 1) serve two phases, one after the
other in the same run:

1. baseline: a bare paho subscriber (MQTT 5, QoS 1, like central) whose callback only counts;
2. central: the real `busfleet central serve` process on a fresh database: a SQLite file
   (`--backend sqlite`, the default), or a PostgreSQL database created for the run
   (`--backend postgresql`: on a throwaway cluster the bench starts as the tests start theirs,
   tests/postgres_helpers.py, fsync and synchronous_commit on; or on `--pg-url`'s server).
   `--instances N` > 1 starts N of them as one group on that database (`--group bench
   --client-id central-I`, MQTT 5 shared subscription; one of them leads, service.py).

Each phase has two parts:

- paced: the buses publish at 1 Hz for a warm-up and then `--seconds` measured. The sustained
  rate is what the subscriber took in the measured window (central: records stored, by their
  `received` time in its database). Latency is end to end through storage: the bench follows
  the `stored` receipts of a sample of the buses (all up to 1,000, else every k-th) and takes
  receipt arrival minus the moment the publisher called publish. Central sends a receipt only
  after the SQLite commit, with the record already in its fleet state, so this is "bus publish
  -> stored & in fleet state" plus one broker hop back.
- backlog: the subscriber is stopped (SIGSTOP), `--backlog` more records are published into the
  broker's queue for it, then it is let go (SIGCONT) and the rate at which it drains them is its
  capacity, with the publishers idle. At 1 Hz both subscribers only follow the offered load, so
  the DESIGN.md efficiency goal (central at least half a bare paho subscriber) is judged here.

CPU figures are per cent of one core (psutil), and CPU microseconds per record. The machine
is shared: `machine_cpu_pct` says how busy it was as a whole (200 = both cores).

With several instances the figures are the group's: the rate is every record stored (the
database's `received` times, whoever stored it), latency follows the receipts whichever
instance sent them, central's CPU (at 1 Hz and draining) is the sum over the instances
(`central_cpu_pct_per_instance` splits it: the leader also keeps the fleet view and the
alarms of every record, so it costs more), and SIGSTOP/SIGCONT stop and free all of them.
On the bench's own PostgreSQL cluster `postgres_cpu_pct` / `postgres_cpu_us_per_record` are
the server's (postmaster and backends) at 1 Hz, not included in central's: a fair comparison
with SQLite, which runs inside central, adds them.

Measured on the 2-core dev machine, shared with other work (machine_cpu_pct 150-200 % in
these runs: figures move by tens of per cent from run to run; compare the CPU per record).
With the compiled compact decoder (busfleet/compact_build.py) and receipts at QoS 0:

- `--batch 10` (the agent's default), 10,000 buses: carried at 10,000 records/s, p99
  150-190 ms, central ~26-29 us of CPU a record (before: 41 us, p99 ~90 ms on a quieter
  machine). Draining a backlog central takes 22,000-34,000 records/s at ~21-22 us a record
  (before: 38,000 at 31.5 us) where the bare paho subscriber takes 90,000-210,000 at ~4 us:
  efficiency 0.14-0.39 by rate, ~0.19 by CPU (before ~0.15); goal 0.5, not met.
- `--batch 1`, 2,000 buses (central keeps up, so the backlog measures capacity): efficiency
  0.35 (before 0.28), central ~106 us a record draining (before 130), the bare subscriber ~40.
- `--batch 1`, 10,000 buses: central falls behind at 5,400 records/s (before ~6,300; ~107 us
  of CPU a record either way), so every bus goes "offline" (10,000 alarms) and the backlog
  part measures that cascade, not capacity: the 10,000-bus goal is not met there.

Both backends, one and two instances (issue 15; 2026-12 on main after the PostgreSQL and
group merges, compiled decoder; 30 s measured, 2 shared cores; "paho" = the bare subscriber of
the same run; rate in records/s at 1 Hz, CPU in us a record at 1 Hz, drain in records/s):

  configuration (buses, batch)   rate   p99 ms  CPU   PG CPU  drain   paho drain  eff.  machine
  sqlite x1 (10,000, 10)        9,995     71   27.3    -     46,100    243,400   0.19     71
  postgresql x1 (10,000, 10)   10,007    258   52.7    -     16,500    236,000   0.07    155
                     again     10,015    205   48.5   28.2   19,400    246,700   0.08    144
  postgresql x2 (10,000, 10)    9,985  1,048   66.2    -     15,000    237,500   0.06    164
                     again      9,997     96   63.7    -     18,900    267,100   0.07    116
                     again     10,006    106   65.0   27.5   17,800    255,800   0.07    131
  sqlite x1 (2,000, 1)          2,001     78  142.9    -      7,900     23,800   0.33     77

(paho at 1 Hz: 7.5-9.1 us a record at batch 10, 72.5 at batch 1.) p99 < 1 s holds in every
run but the first two-instance one, taken while the machine was at 164 % (the others' tests):
its repeats, on a quieter machine, are at ~100 ms. Every record published was stored (500,000
of 500,000) in every run. On PostgreSQL central waits on the database: draining, central uses
~62-76 % of a core (SQLite: 110 %) for a third to two fifths of SQLite's rate; the insert path,
timed apart (one executemany of 10 rows a message, group commit of 100 messages, the same
cluster), takes ~320 us a message (~31,000 records/s; the retention trigger ~17 % of it), a
round trip a message: the store has to say how many of each message's records were new, so
its insert cannot be deferred to the commit. Batched over a transaction (1,000 rows a
statement) the same insert takes 62,000 records/s by executemany, 77,000 by COPY into a
temporary table and INSERT ... ON CONFLICT DO NOTHING from it: the remedy, if PostgreSQL's
drain rate matters, is an ingest that stores a transaction's records in one call.

Where central's time goes (cProfile with a CPU clock per thread, sitecustomize on `central
serve`, 3,000 buses draining a backlog; the profiler inflates small Python calls). At one
record a message: paho's network thread is about half of central's CPU (its PUBLISH parsing,
MQTT 5 properties, a PUBACK each: what the bare subscriber pays too); of the event loop's
half, the ingest ~42 % (decoder now ~4 %, SQLite executemany ~10 %, fleet state ~5 %,
alarms ~4 %, commit ~3 %) and paho's `publish` ~36 %: a receipt per message and the fleet
entries (`_publish`, ~27 % with their encoding and save), each a Python-level packet build
and a wake-up write to paho's socket pair. At ten records a message the event loop is ~64 %
of central: the ingest ~53 % of it (SQLite ~17 %, alarms ~8 %, decoder ~7 %, fleet state
~6 %) and publishing ~13 %. What is left is per message and in paho, the fleet entries and
SQLite, not in the decoder (before: ~45 % of the GIL time at ten records a message).

Run: .venv/bin/python bench/central_ingest.py --buses 10000 --seconds 30 [--batch 10]
     [--backend sqlite|postgresql] [--pg-url URL] [--instances N]
Progress goes to stderr; the last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs in the lock
import psycopg
from ingest_load import PublisherSpec, bus_id, run_bare_subscriber, run_publisher
from ingest_measure import CpuMeter, Receipts, figures, latencies, print_table, report

from busfleet.broker.launch import run_mosquitto
from protocols import compact, topics
from protocols.compact import decode_batch

REPO = Path(__file__).resolve().parent.parent
MAX_SAMPLED = 1000  # buses whose receipts the bench follows


def log(message: str) -> None:
    print(f"[central_ingest] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--buses", type=int, default=1000, help="simulated buses (1000)")
    p.add_argument("--seconds", type=int, default=30, help="measured seconds at 1 Hz (30)")
    p.add_argument("--warmup", type=int, default=5, help="seconds before measuring (5)")
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help="records per message: each bus publishes every BATCH seconds (1; the agent's\n"
        "default, telemetry.send_every_s, makes it 10)",
    )
    p.add_argument(
        "--backlog", type=int, default=60_000, help="records for the capacity test; 0 = none"
    )
    p.add_argument("--publishers", type=int, default=2, help="publisher processes (2)")
    p.add_argument("--drain", type=float, default=60.0, help="max seconds to wait for stragglers")
    p.add_argument("--workdir", type=Path, help="keep logs and the database here (default: temp)")
    p.add_argument(
        "--backend",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="central's database: a fresh SQLite file, or a fresh PostgreSQL database (sqlite)",
    )
    p.add_argument(
        "--pg-url",
        help="a PostgreSQL server to use (postgresql://user@host:port/db; its role needs\n"
        "CREATEDB: the run creates a database of its own there and drops it after); default:\n"
        "a throwaway cluster (tests/postgres_helpers.py: fsync and synchronous_commit on)",
    )
    p.add_argument(
        "--instances",
        type=int,
        default=1,
        help="central serve processes on the database (1); more than one run as one group\n"
        "(--group bench --client-id central-I, MQTT 5 shared subscription)",
    )
    args = p.parse_args(argv)
    if min(args.buses, args.seconds, args.publishers, args.batch, args.instances) < 1:
        p.error("--buses, --seconds, --publishers, --batch and --instances must be at least 1")
    if args.pg_url and args.backend != "postgresql":
        p.error("--pg-url goes with --backend postgresql")
    return args


class Run:
    """Everything the bench started, stopped in reverse order whatever happens."""

    def __init__(self, args: argparse.Namespace, workdir: Path, port: int) -> None:
        self.args = args
        self.workdir = workdir
        self.port = port
        self.ctx = mp.get_context("spawn")  # no fork of a process with a paho thread
        self.children: list[tuple[mp.process.BaseProcess, Connection]] = []
        self.centrals: list[subprocess.Popen[bytes]] = []
        self.db: BenchDatabase | None = None
        self.sampled = list(range(0, args.buses, max(1, math.ceil(args.buses / MAX_SAMPLED))))
        self.messages = math.ceil((args.warmup + args.seconds) / args.batch)  # paced, per bus
        # Messages per bus for the backlog.
        self.flood = math.ceil(args.backlog / args.buses / args.batch) if args.backlog else 0
        self.publishers: list[Connection] = []
        self.procs: dict[str, psutil.Process] = {}

    def _spawn(self, target: Any, *args: Any) -> tuple[Connection, psutil.Process]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=target, args=(child, *args), daemon=True)
        proc.start()
        self.children.append((proc, parent))
        return parent, psutil.Process(proc.pid)

    def start_publishers(self) -> None:
        a = self.args
        t_base = time.time()
        for i in range(min(a.publishers, a.buses)):
            buses = tuple(range(i, a.buses, a.publishers))
            spec = PublisherSpec(
                index=i,
                buses=buses,
                port=self.port,
                batch=a.batch,
                messages=self.messages,
                flood_messages=self.flood,
                sampled=frozenset(self.sampled) & frozenset(buses),
                t_base=t_base,
            )
            conn, proc = self._spawn(run_publisher, spec)
            self.publishers.append(conn)
            self.procs[f"publisher{i}"] = proc
        for c in self.publishers:
            if not c.poll(900):
                raise RuntimeError("a publisher did not get ready")
            c.recv()

    def start_bare(self, progress: Any) -> tuple[Connection, psutil.Process]:
        sampled = frozenset(topics.telemetry(bus_id(b)) for b in self.sampled)
        conn, proc = self._spawn(run_bare_subscriber, self.port, sampled, progress)
        if not conn.poll(30):
            raise RuntimeError("the bare subscriber did not get ready")
        conn.recv()
        return conn, proc

    def start_centrals(self, db: BenchDatabase) -> dict[str, psutil.Process]:
        """`--instances` central serve processes on `db`; by name (central, or central-I)."""
        n, port = self.args.instances, str(self.port)
        out = {}
        for i in range(n):
            name = "central" if n == 1 else f"central-{i}"
            command = [sys.executable, "-m", "busfleet.cli", "central", "serve", "--db", db.setting]
            command += ["--mqtt-port", port, "--log-level", "WARNING", "--http-port", "0"]
            if n > 1:
                command += ["--group", "bench", "--client-id", name]
            proc = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=(self.workdir / f"{name}.log").open("ab"),
            )
            self.centrals.append(proc)
            out[name] = psutil.Process(proc.pid)
        return out

    def stop_centrals(self) -> None:
        for central in self.centrals:
            if central.poll() is None:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(central.pid).resume()  # if stopped for the backlog
                central.terminate()
        for central in self.centrals:
            try:
                central.wait(20)
            except subprocess.TimeoutExpired:
                central.kill()
                central.wait()

    def close(self) -> None:
        self.stop_centrals()
        for proc, conn in self.children:
            with contextlib.suppress(OSError, psutil.Error):
                psutil.Process(proc.pid).resume()
                conn.send(("quit",))
        for proc, _conn in self.children:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def paced(run: Run, procs: dict[str, psutil.Process], name: str) -> dict[str, Any]:
    """The 1 Hz load: warm-up, then the measured window; returns the publishers' results."""
    a = run.args
    t0 = time.time() + 1.0
    for c in run.publishers:
        c.send(("paced", t0))
    meter = CpuMeter(procs)
    w0, w1 = t0 + a.warmup, t0 + a.warmup + a.seconds
    time.sleep(max(0.0, w0 - time.time()))
    meter.begin()
    while time.time() < w1:
        time.sleep(min(5.0, max(0.0, w1 - time.time())))
        log(f"{name}: {time.time() - w0:.0f}/{a.seconds} s measured")
    cpu = meter.end()
    results = [c.recv() for c in run.publishers]
    return {"window": (w0, w1), "cpu": cpu, "results": results}


def backlog(
    run: Run,
    subscribers: dict[str, psutil.Process],
    procs: dict[str, psutil.Process],
    progress: Callable[[], tuple[int, float]],
    expected: int,
) -> dict[str, Any] | None:
    """Stop the subscribers, queue the backlog at the broker, let go and time the drain.

    `progress()` gives (records taken so far, time of the last one); `expected` is the total.
    The CPU is the sum of the subscribers' (central's instances).
    What the broker dropped (its queue for one client holds max_queued_messages) never comes:
    the drain ends when nothing more arrives for 5 s.
    """
    if not run.flood:
        return None
    for subscriber in subscribers.values():
        subscriber.suspend()
    try:
        for c in run.publishers:
            c.send(("flood",))
        records = sum(c.recv()["published"] for c in run.publishers)
        before, _t = progress()  # a subscriber still behind drains its paced records first
        meter = CpuMeter(procs)
        meter.begin()
        go = time.time()
    finally:
        for subscriber in subscribers.values():
            subscriber.resume()
    deadline, last, still = time.time() + run.args.drain, -1, time.time()
    while time.time() < deadline:
        done, _t = progress()
        if done >= expected:
            break
        if done != last:
            last, still = done, time.time()
        elif time.time() - still > 5.0:
            log(f"drain stalled at {done} of {expected} records")
            break
        time.sleep(0.25)
    cpu = meter.end()
    done, t_last = progress()
    drained = done - before  # while it had a backlog: its capacity
    seconds = max(t_last - go, 1e-3)
    cpu_s = sum(cpu.get(name, 0.0) for name in subscribers) / 100 * cpu["wall"]
    return {
        "records": records,
        "rate": drained / seconds,
        "cpu_pct": round(100 * cpu_s / seconds, 1),  # over the drain, not the polling tail
        "cpu_us_per_record": round(cpu_s / max(drained, 1) * 1e6, 1),
    }


def baseline_phase(run: Run, broker: psutil.Process) -> dict[str, Any]:
    log("baseline phase: a bare paho subscriber")
    progress = run.ctx.Array("d", 2, lock=False)  # messages, time of the last one
    conn, proc = run.start_bare(progress)
    procs = {"subscriber": proc, "broker": broker, **run.procs}
    phase = paced(run, procs, "baseline")
    k = run.args.batch
    expected = run.args.buses * run.messages * k + run.flood * run.args.buses * k
    time.sleep(2.0)
    cap = backlog(
        run, {"subscriber": proc}, procs, lambda: (int(progress[0]) * k, progress[1]), expected
    )
    conn.send(("stop",))
    result = conn.recv()
    arrival: dict[tuple[int, int], float] = {}
    index = {topics.telemetry(bus_id(b)): b for b in run.sampled}
    for topic, payload, t in result["samples"]:
        for r in decode_batch(payload).records:
            arrival.setdefault((index[topic], r.seq), t)
    w0, w1 = phase["window"]
    lo, hi = int(w0 * 10), int(w1 * 10)
    took = sum(v for b, v in result["buckets"].items() if lo <= b < hi) * k
    lat = latencies(run.args, phase["results"], arrival)
    out = figures(took / (w1 - w0), lat, phase["cpu"], "subscriber")
    out["backlog"] = cap
    return out


class BenchDatabase:
    """Central's database for one run, as the bench reads it: records stored, and when."""

    def __init__(self, setting: str, server_pid: int | None = None) -> None:
        self.setting = setting  # central serve's --db
        self.postgres = setting.startswith("postgresql://")
        self.server_pid = server_pid  # the bench's own PostgreSQL cluster: its postmaster

    def server_processes(self) -> dict[str, psutil.Process]:
        """The processes of the bench's own PostgreSQL cluster (postmaster, backends), by name
        (postgres-PID); none on SQLite or on --pg-url's server."""
        if self.server_pid is None:
            return {}
        with contextlib.suppress(psutil.Error):
            main = psutil.Process(self.server_pid)
            return {f"postgres-{p.pid}": p for p in [main, *main.children()]}
        return {}

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        if self.postgres:
            with psycopg.connect(self.setting, autocommit=True) as conn:
                row = conn.execute(sql.replace("?", "%s"), params).fetchone()
        else:
            with contextlib.closing(sqlite3.connect(self.setting, timeout=10)) as conn:
                row = conn.execute(sql, params).fetchone()
        assert row is not None
        return tuple(row)

    def progress(self) -> tuple[int, float]:
        """Records stored so far, and the `received` time of the last."""
        count, last = self._query("SELECT COUNT(*), MAX(received) FROM telemetry")
        return int(count), float(last or 0.0)

    def stored(self, w0: float = 0.0, w1: float = math.inf) -> int:
        """Records stored (received) in [w0, w1)."""
        if math.isinf(w1):
            return int(self._query("SELECT COUNT(*) FROM telemetry")[0])
        sql = "SELECT COUNT(*) FROM telemetry WHERE received >= ? AND received < ?"
        return int(self._query(sql, (w0, w1))[0])


@contextlib.contextmanager
def fresh_database(args: argparse.Namespace, wd: Path) -> Iterator[BenchDatabase]:
    """A new, empty database for this run: a SQLite file in the work directory, or a database
    created for the run on --pg-url's server or on a throwaway cluster, dropped after."""
    if args.backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):  # a kept --workdir may hold an earlier run's
            (wd / f"central.sqlite{suffix}").unlink(missing_ok=True)
        yield BenchDatabase(str(wd / "central.sqlite"))
        return
    if args.pg_url is None:
        sys.path.insert(0, str(REPO))
        from tests.postgres_helpers import PostgresServer  # the tests' cluster

        with PostgresServer() as server:
            log(f"PostgreSQL cluster started in {server.dir}")
            pid = int((server.data / "postmaster.pid").read_text().split()[0])
            yield BenchDatabase(server.create_database(), pid)
        return
    name = f"central_ingest_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield BenchDatabase(args.pg_url.rsplit("/", 1)[0] + "/" + name)
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def central_phase(run: Run, broker: psutil.Process, db: BenchDatabase) -> dict[str, Any]:
    a = run.args
    log(f"central phase: busfleet central serve x {a.instances} on {a.backend}")
    centrals = run.start_centrals(db)
    receipts = Receipts(run.port, run.sampled, [n for n in centrals if a.instances > 1])
    try:
        if not receipts.ready(60):
            raise RuntimeError("central did not come up (see central*.log)")
        procs = {**centrals, "broker": broker, **run.procs, **db.server_processes()}
        phase = paced(run, procs, "central")
        expected = len(run.sampled) * run.messages * a.batch
        deadline = time.time() + a.drain
        while len(receipts.arrival) < expected and time.time() < deadline:
            time.sleep(0.2)
        published = sum(r["published"] for r in phase["results"])
        total = published + run.flood * a.buses * a.batch
        cap = backlog(run, centrals, procs, db.progress, total)
        lat = latencies(a, phase["results"], receipts.arrival)
    finally:
        receipts.close()
        run.stop_centrals()
    w0, w1 = phase["window"]
    cpu = phase["cpu"]
    if a.instances > 1:  # central's CPU: its instances' summed (each is in `cpu` too)
        cpu["central"] = round(sum(cpu.get(n, 0.0) for n in centrals), 1)
    if db.server_pid is not None:  # the database server's CPU, apart from central's
        cpu["postgres"] = round(sum(v for k, v in cpu.items() if k.startswith("postgres-")), 1)
    out = figures(db.stored(w0, w1) / (w1 - w0), lat, cpu, "central")
    out.update(
        backlog=cap,
        published=published + (cap["records"] if cap else 0),
        stored=db.stored(),
        lag_p99=max(r["lag_p99_s"] for r in phase["results"]),
    )
    return out


@contextlib.contextmanager
def workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="central-ingest-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def stop(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # so that `finally` stops every child
    try:
        with workdir(args.workdir) as wd, run_mosquitto(wd / "mosquitto") as broker:
            mosquitto = next(p for p in psutil.Process().children() if p.name() == "mosquitto")
            run = Run(args, wd, broker.port)
            try:
                log(f"encoding the records of {args.buses} buses in {args.publishers} publishers")
                run.start_publishers()
                base = baseline_phase(run, mosquitto)
                with fresh_database(args, wd) as db:
                    cen = central_phase(run, mosquitto, db)
            finally:
                run.close()
    except KeyboardInterrupt:
        log("interrupted: every process the bench started is stopped")
        return 130
    out = report(args, base, cen)
    out["backend"] = args.backend
    out["instances"] = args.instances
    server = cen["cpu"].get("postgres")  # only when the bench started the cluster
    out["postgres_cpu_pct"] = server
    out["postgres_cpu_us_per_record"] = (
        round(server / 100 / cen["rate"] * 1e6, 1) if server is not None and cen["rate"] else None
    )
    if args.instances > 1:
        out["central_cpu_pct_per_instance"] = {
            k: v for k, v in cen["cpu"].items() if k.startswith("central-")
        }
    out["central_decoder"] = "compiled" if compact.NATIVE else "pure Python"  # same tree, venv
    print_table(out)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
