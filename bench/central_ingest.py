"""Central ingest at city scale: N simulated buses at 1 Hz against `busfleet central serve`.

One mosquitto (development config) and a few publisher processes (bench/ingest_load.py: each
one paho connection publishing for its share of the buses, one record per bus per second in
compact TelemetryBatch messages of `--batch` records, QoS 1) serve two phases, one after the
other in the same run:

1. baseline: a bare paho subscriber (MQTT 5, QoS 1, like central) whose callback only counts;
2. central: the real `busfleet central serve` process on a fresh SQLite file.

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

Run: .venv/bin/python bench/central_ingest.py --buses 10000 --seconds 30
Progress goes to stderr; the last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psutil  # type: ignore[import-untyped]  # no stubs in the lock
from ingest_load import PublisherSpec, bus_id, run_bare_subscriber, run_publisher
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker import run_mosquitto
from protocols import codec, topics
from protocols.compact import decode_batch
from protocols.schemas import CentralStats, Stored

GOAL_BUSES = 10_000
GOAL_P99_MS = 1000.0
GOAL_EFFICIENCY = 0.5
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
    args = p.parse_args(argv)
    if min(args.buses, args.seconds, args.publishers, args.batch) < 1:
        p.error("--buses, --seconds, --publishers and --batch must be at least 1")
    return args


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None if it falls on a missing (infinite) value."""
    if not values:
        return None
    ordered = sorted(values)
    value = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    return None if math.isinf(value) else value


def rnd(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


class CpuMeter:
    """CPU seconds of some processes over a window (and the machine's use of its cores)."""

    def __init__(self, procs: dict[str, psutil.Process]) -> None:
        self.procs = procs
        self.start: dict[str, float] = {}
        self.t0 = 0.0

    def _times(self) -> dict[str, float]:
        out = {}
        for name, p in self.procs.items():
            with contextlib.suppress(psutil.Error):
                c = p.cpu_times()
                out[name] = c.user + c.system
        return out

    def begin(self) -> None:
        self.t0 = time.monotonic()
        self.start = self._times()
        psutil.cpu_percent()

    def end(self) -> dict[str, float]:
        """Per cent of one core for each process, "machine" for all cores, "wall" seconds."""
        wall = time.monotonic() - self.t0
        now = self._times()
        out = {n: round(100 * (now[n] - self.start[n]) / wall, 1) for n in now if n in self.start}
        out["machine"] = round(psutil.cpu_percent() * psutil.cpu_count(), 1)
        out["wall"] = wall
        return out


class Receipts:
    """Follows central's receipts for the sampled buses and its stats, on a paho thread."""

    def __init__(self, port: int, sampled: list[int]) -> None:
        self.arrival: dict[tuple[int, int], float] = {}
        self.stats_seen = threading.Event()
        self.index = {topics.stored(bus_id(b)): b for b in sampled}
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-receipts", protocol=paho.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        wanted = [*self.index, topics.central_stats()]
        for i in range(0, len(wanted), 200):
            self.client.subscribe([(t, 1) for t in wanted[i : i + 200]])
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        bus = self.index.get(msg.topic)
        if bus is None:
            codec.decode(CentralStats, bytes(msg.payload))
            self.stats_seen.set()  # central is up: it publishes stats once subscribed
            return
        for first, last in codec.decode(Stored, bytes(msg.payload)).ranges:
            for seq in range(first, last + 1):
                self.arrival.setdefault((bus, seq), now)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Run:
    """Everything the bench started, stopped in reverse order whatever happens."""

    def __init__(self, args: argparse.Namespace, workdir: Path, port: int) -> None:
        self.args = args
        self.workdir = workdir
        self.port = port
        self.ctx = mp.get_context("spawn")  # no fork of a process with a paho thread
        self.children: list[tuple[mp.process.BaseProcess, Connection]] = []
        self.central: subprocess.Popen[bytes] | None = None
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

    def start_central(self) -> psutil.Process:
        for suffix in ("", "-wal", "-shm"):  # a kept --workdir may hold an earlier run's
            (self.workdir / f"central.sqlite{suffix}").unlink(missing_ok=True)
        db, port = str(self.workdir / "central.sqlite"), str(self.port)
        self.central = subprocess.Popen(
            [sys.executable, "-m", "busfleet.cli", "central", "serve", "--db", db]
            + ["--mqtt-port", port, "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "central.log").open("ab"),
        )
        return psutil.Process(self.central.pid)

    def stop_central(self) -> None:
        if self.central is not None and self.central.poll() is None:
            with contextlib.suppress(psutil.Error):
                psutil.Process(self.central.pid).resume()  # if stopped for the backlog
            self.central.terminate()
            try:
                self.central.wait(20)
            except subprocess.TimeoutExpired:
                self.central.kill()
                self.central.wait()

    def close(self) -> None:
        self.stop_central()
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
    subscriber: psutil.Process,
    procs: dict[str, psutil.Process],
    progress: Callable[[], tuple[int, float]],
    expected: int,
    name: str,
) -> dict[str, Any] | None:
    """Stop the subscriber, queue the backlog at the broker, let go and time the drain.

    `progress()` gives (records taken so far, time of the last one); `expected` is the total.
    """
    if not run.flood:
        return None
    subscriber.suspend()
    try:
        for c in run.publishers:
            c.send(("flood",))
        records = sum(c.recv()["published"] for c in run.publishers)
        meter = CpuMeter(procs)
        meter.begin()
        go = time.time()
    finally:
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
    drained = records - (expected - done)  # of the backlog
    seconds = max(t_last - go, 1e-3)
    cpu_s = cpu.get(name, 0.0) / 100 * cpu["wall"]
    return {
        "records": records,
        "rate": drained / seconds,
        "cpu_pct": round(100 * cpu_s / seconds, 1),  # over the drain, not the polling tail
        "cpu_us_per_record": round(cpu_s / max(drained, 1) * 1e6, 1),
    }


def latencies(
    args: argparse.Namespace, results: list[dict[str, Any]], arrival: dict[tuple[int, int], float]
) -> list[float]:
    """Arrival minus publish time of every sampled message published in the measured window.

    A message's records arrive together (one transaction, one receipt): its first stands for it.
    """
    k = args.batch
    out = []
    for result in results:
        for bus, times in result["times"].items():
            for m, published in enumerate(times):
                if args.warmup <= m * k < args.warmup + args.seconds:
                    got = arrival.get((bus, m * k))
                    out.append(math.inf if got is None else got - published)
    return out


def figures(rate: float, lat: list[float], cpu: dict[str, float], name: str) -> dict[str, Any]:
    return {
        "rate": rate,
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "max": percentile(lat, 1.0),
        "missing": sum(1 for x in lat if math.isinf(x)),
        "samples": len(lat),
        "cpu": cpu,
        "cpu_pct": cpu.get(name),
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
        run, proc, procs, lambda: (int(progress[0]) * k, progress[1]), expected, "subscriber"
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


def db_progress(db: Path) -> tuple[int, float]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        count, last = conn.execute("SELECT COUNT(*), MAX(received) FROM telemetry").fetchone()
        return int(count), float(last or 0.0)


def central_phase(run: Run, broker: psutil.Process) -> dict[str, Any]:
    log("central phase: busfleet central serve")
    central = run.start_central()
    receipts = Receipts(run.port, run.sampled)
    db = run.workdir / "central.sqlite"
    a = run.args
    try:
        if not receipts.stats_seen.wait(30):
            raise RuntimeError("central did not come up (see central.log)")
        procs = {"central": central, "broker": broker, **run.procs}
        phase = paced(run, procs, "central")
        expected = len(run.sampled) * run.messages * a.batch
        deadline = time.time() + a.drain
        while len(receipts.arrival) < expected and time.time() < deadline:
            time.sleep(0.2)
        published = sum(r["published"] for r in phase["results"])
        total = published + run.flood * a.buses * a.batch
        cap = backlog(run, central, procs, lambda: db_progress(db), total, "central")
        lat = latencies(a, phase["results"], receipts.arrival)
    finally:
        receipts.close()
        run.stop_central()
    w0, w1 = phase["window"]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (stored_in_window,) = conn.execute(
            "SELECT COUNT(*) FROM telemetry WHERE received >= ? AND received < ?", (w0, w1)
        ).fetchone()
        (total,) = conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()
    out = figures(stored_in_window / (w1 - w0), lat, phase["cpu"], "central")
    out.update(
        backlog=cap,
        published=published + (cap["records"] if cap else 0),
        stored=total,
        lag_p99=max(r["lag_p99_s"] for r in phase["results"]),
    )
    return out


def report(args: argparse.Namespace, base: dict[str, Any], cen: dict[str, Any]) -> dict[str, Any]:
    def us(cpu_pct: float | None, rate: float | None) -> float | None:
        """CPU microseconds per record: a CPU share over the rate it carried."""
        return None if cpu_pct is None or not rate else round(cpu_pct / 100 / rate * 1e6, 1)

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 1)

    bc, cc = base["backlog"], cen["backlog"]
    efficiency = cc["rate"] / bc["rate"] if bc and cc and bc["rate"] else None
    out: dict[str, Any] = {
        "buses": args.buses,
        "seconds": args.seconds,
        "batch": args.batch,
        "offered_per_s": args.buses,
        "rate_per_s": rnd(cen["rate"]),
        "p50_ms": ms(cen["p50"]),
        "p99_ms": ms(cen["p99"]),
        "max_ms": ms(cen["max"]),
        "latency_samples": cen["samples"],
        "missing_receipts": cen["missing"],
        "central_cpu_pct": cen["cpu_pct"],
        "central_cpu_us_per_record": us(cen["cpu_pct"], cen["rate"]),
        "broker_cpu_pct": cen["cpu"].get("broker"),
        "publishers_cpu_pct": rnd(
            sum(v for k, v in cen["cpu"].items() if k.startswith("publisher"))
        ),
        "machine_cpu_pct": cen["cpu"].get("machine"),
        "publisher_lag_p99_ms": ms(cen["lag_p99"]),
        "bare_paho_rate_per_s": rnd(base["rate"]),
        "bare_paho_p50_ms": ms(base["p50"]),
        "bare_paho_p99_ms": ms(base["p99"]),
        "bare_paho_cpu_pct": base["cpu_pct"],
        "bare_paho_cpu_us_per_record": us(base["cpu_pct"], base["rate"]),
        "backlog_records": cc["records"] if cc else 0,
        "backlog_rate_per_s": rnd(cc["rate"]) if cc else None,
        "backlog_central_cpu_pct": cc["cpu_pct"] if cc else None,
        "backlog_central_cpu_us_per_record": cc["cpu_us_per_record"] if cc else None,
        "bare_paho_backlog_rate_per_s": rnd(bc["rate"]) if bc else None,
        "bare_paho_backlog_cpu_pct": bc["cpu_pct"] if bc else None,
        "bare_paho_backlog_cpu_us_per_record": bc["cpu_us_per_record"] if bc else None,
        "efficiency": rnd(efficiency, 2),
        "published": cen["published"],
        "stored": cen["stored"],
    }
    out["goal_met"] = bool(
        args.buses >= GOAL_BUSES
        and out["p99_ms"] is not None
        and out["p99_ms"] < GOAL_P99_MS
        and cen["rate"] >= 0.99 * args.buses
    )
    out["efficiency_goal_met"] = efficiency is not None and efficiency >= GOAL_EFFICIENCY
    return out


def print_table(out: dict[str, Any]) -> None:
    rows = [
        ("sustained rate (records/s)", "rate_per_s", "bare_paho_rate_per_s"),
        ("p50 publish -> stored receipt (ms)", "p50_ms", "bare_paho_p50_ms"),
        ("p99 publish -> stored receipt (ms)", "p99_ms", "bare_paho_p99_ms"),
        ("CPU at 1 Hz (% of a core)", "central_cpu_pct", "bare_paho_cpu_pct"),
        ("CPU per record at 1 Hz (us)", "central_cpu_us_per_record", "bare_paho_cpu_us_per_record"),
        ("backlog drain rate (records/s)", "backlog_rate_per_s", "bare_paho_backlog_rate_per_s"),
        ("CPU draining (% of a core)", "backlog_central_cpu_pct", "bare_paho_backlog_cpu_pct"),
        (
            "CPU per record draining (us)",
            "backlog_central_cpu_us_per_record",
            "bare_paho_backlog_cpu_us_per_record",
        ),
    ]
    print(
        f"{out['buses']} buses at 1 Hz, {out['batch']} record(s) a message, "
        f"{out['seconds']} s measured"
    )
    print(f"{'':38} {'central':>10} {'bare paho':>10}")
    for label, c, b in rows:
        print(f"{label:38} {out[c]!s:>10} {out[b]!s:>10}")
    print(
        f"central phase: broker CPU {out['broker_cpu_pct']} %, publishers "
        f"{out['publishers_cpu_pct']} %, machine {out['machine_cpu_pct']} % of 200; publisher "
        f"lag p99 {out['publisher_lag_p99_ms']} ms; {out['missing_receipts']} of "
        f"{out['latency_samples']} sampled receipts missing; stored {out['stored']} of "
        f"{out['published']} published; efficiency (backlog drain) {out['efficiency']}"
    )


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
    with workdir(args.workdir) as wd, run_mosquitto(wd / "mosquitto") as broker:
        mosquitto = next(p for p in psutil.Process().children() if p.name() == "mosquitto")
        run = Run(args, wd, broker.port)
        try:
            log(f"encoding the records of {args.buses} buses in {args.publishers} publishers")
            run.start_publishers()
            base = baseline_phase(run, mosquitto)
            cen = central_phase(run, mosquitto)
        finally:
            run.close()
    out = report(args, base, cen)
    print_table(out)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
