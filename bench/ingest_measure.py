"""Figures of bench/central_ingest.py: CPU meters, the receipt follower, percentiles, report."""

from __future__ import annotations

import argparse
import contextlib
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho
import psutil  # type: ignore[import-untyped]  # no stubs in the lock
from ingest_load import bus_id
from paho.mqtt.enums import CallbackAPIVersion

from protocols import codec, topics
from protocols.schemas import CentralStats, Stored

GOAL_BUSES = 10_000
GOAL_P99_MS = 1000.0
GOAL_EFFICIENCY = 0.5


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
    """Follows central's receipts for the sampled buses and its stats, on a paho thread.

    Central is up when its stats come (the leader's, with `instances` of a group: each one's
    own too: every instance publishes them once subscribed). A receipt counts whoever sent it.
    """

    def __init__(self, port: int, sampled: list[int], instances: Sequence[str] = ()) -> None:
        self.arrival: dict[tuple[int, int], float] = {}
        self.stats_seen = threading.Event()
        self.waiting = {topics.central_instance_stats(i) for i in instances}
        self.all_seen = threading.Event()
        self.index = {topics.stored(bus_id(b)): b for b in sampled}
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-receipts", protocol=paho.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        wanted = [*self.index, topics.central_stats(), *self.waiting]
        for i in range(0, len(wanted), 200):
            self.client.subscribe([(t, 1) for t in wanted[i : i + 200]])
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        bus = self.index.get(msg.topic)
        if bus is None:
            codec.decode(CentralStats, bytes(msg.payload))
            self.waiting.discard(msg.topic)
            if msg.topic == topics.central_stats():
                self.stats_seen.set()  # central is up: it publishes stats once subscribed
            if self.stats_seen.is_set() and not self.waiting:
                self.all_seen.set()
            return
        for first, last in codec.decode(Stored, bytes(msg.payload)).ranges:
            for seq in range(first, last + 1):
                self.arrival.setdefault((bus, seq), now)

    def ready(self, timeout: float) -> bool:
        """Whether every instance of central came up within `timeout` seconds."""
        return self.all_seen.wait(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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
