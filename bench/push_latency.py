"""Push latency: a dispatcher's assignment until the passenger display of that bus shows it.

Setup: a mosquitto on a free loopback port and `--buses` lightweight buses, spread over
`--workers` child processes. A lightweight bus is what of the agent takes part in the push:
an MQTT 5 client subscribed to its desired-state topic; per document what `Agent.on_desired`
does: `onboard.link.desired.evaluate`, the applied state saved in the bus's own SQLite file
(`AppliedStore`, WAL, synchronous=FULL) and `Display.apply_desired`; and a real
`onboard.display.Display` with its own HTTP server on a free port, which an SSE client (the
screen's browser, minus rendering) listens to at /display/events. No GPS, CAN, telemetry or
reported state: those do not lie on the path measured.

Measured: the dispatcher side does what `central.assign` does per assignment (the next
desired document stored in central's SQLite by `next_desired`, published retained with QoS 1
on one connection), at `--rate` assignments/s to random buses, each with a new route id. The
latency of one assignment runs from just before the store write to the SSE event that carries
the new line (the display's fallback label is the assigned route id) arriving at that bus's
screen client. Beside it, from the same run, the baseline: the same publish until the bus's
MQTT client has the message (broker and network alone), and the store write alone.

Run: .venv/bin/python bench/push_latency.py [--buses 1000] [--assignments 1000] [--rate 50]
(`--rate 0`: every assignment at once, the worst case of a whole-fleet reassignment).
Progress goes to stderr; figures to stdout; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere

import aiohttp  # noqa: E402 - after the path fix above
import aiomqtt  # noqa: E402

from busfleet.broker.launch import run_mosquitto  # noqa: E402
from central.assign import next_desired  # noqa: E402
from central.store.db import CentralStore  # noqa: E402
from onboard.display import Display  # noqa: E402
from onboard.link.desired import AppliedStore, evaluate  # noqa: E402
from onboard.link.outbox import Outbox  # noqa: E402
from protocols import topics  # noqa: E402
from protocols.schemas import Assignment, DesiredState  # noqa: E402

GOAL_P99_MS = 500.0


def bus_name(i: int) -> str:
    return f"bus-{i:04d}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- worker: a share of the lightweight buses ---------------------------------------------


class LightBus:
    def __init__(self, bus_id: str, host: str, port: int, data_dir: Path) -> None:
        self.bus_id = bus_id
        self.store = AppliedStore(Outbox(data_dir / f"{bus_id}.sqlite"))
        self.host, self.port = host, port
        self.display = Display("127.0.0.1", 0, heartbeat_s=60.0)
        self.applied: DesiredState | None = None
        self.mqtt_seen: dict[str, float] = {}  # route id -> when the MQTT message arrived
        self.shown: dict[str, float] = {}  # route id -> when the screen got it
        self.subscribed = asyncio.Event()
        self.listening = asyncio.Event()

    async def run_mqtt(self) -> None:
        async with aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.bus_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=60,
            timeout=60,
        ) as client:
            await client.subscribe(topics.desired(self.bus_id), qos=1)
            self.subscribed.set()
            async for message in client.messages:
                now = time.time()
                if not isinstance(message.payload, bytes):
                    continue
                outcome = evaluate(self.applied, message.payload, self.bus_id)
                if outcome.applied is not None and outcome.applied != self.applied:
                    self.store.save(outcome.applied)
                self.applied = outcome.applied
                if self.applied and self.applied.assignment and self.applied.assignment.route_id:
                    self.mqtt_seen[self.applied.assignment.route_id] = now
                self.display.apply_desired(self.applied)  # what Agent.on_desired does

    async def run_screen(self, session: aiohttp.ClientSession) -> None:
        url = f"http://127.0.0.1:{self.display.port}/display/events"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                now = time.time()
                line_shown = json.loads(line[6:])["state"]["line"]
                self.listening.set()
                if line_shown and line_shown not in self.shown:
                    self.shown[line_shown] = now


async def worker_main(first: int, count: int, host: str, port: int, data_dir: Path) -> None:
    buses = [LightBus(bus_name(i), host, port, data_dir) for i in range(first, first + count)]
    for bus in buses:
        await bus.display.start()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session, asyncio.TaskGroup() as tg:
        for bus in buses:
            tg.create_task(bus.run_screen(session), name=f"screen-{bus.bus_id}")
        # Connect gradually: a thousand CONNECTs at once only measures the broker's accept.
        for i, bus in enumerate(buses):
            tg.create_task(bus.run_mqtt(), name=f"mqtt-{bus.bus_id}")
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        for bus in buses:
            await bus.subscribed.wait()
            await bus.listening.wait()
        print("ready", flush=True)
        # The parent says "done" on stdin when it has assigned everything and waited.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        results = {
            b.bus_id: {"mqtt": b.mqtt_seen, "shown": b.shown, "clients": b.display.clients}
            for b in buses
        }
        print(json.dumps(results), flush=True)
        os._exit(0)  # the 500 servers and connections need no orderly goodbye


# -- the dispatcher side ------------------------------------------------------------------


def start_workers(
    n_buses: int, n_workers: int, host: str, port: int, data_dir: Path
) -> list[subprocess.Popen[str]]:
    procs = []
    share = -(-n_buses // n_workers)
    for w in range(n_workers):
        first = w * share
        count = min(share, n_buses - first)
        if count <= 0:
            break
        cmd = [sys.executable, __file__, "--worker", str(first), str(count), host, str(port)]
        cmd.append(str(data_dir))
        procs.append(
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    return procs


async def dispatch(
    host: str, port: int, db: Path, n_buses: int, n_assign: int, rate: float, seed: int
) -> tuple[dict[tuple[str, str], float], list[float]]:
    """Assign like central.assign; returns (bus, route) -> t0 and the store write times."""
    rng = random.Random(seed)
    store = CentralStore(db)
    sent: dict[tuple[str, str], float] = {}
    store_ms: list[float] = []
    async with aiomqtt.Client(
        host, port, identifier="central-bench", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        start = time.monotonic()
        for n in range(n_assign):
            if rate > 0:
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            bus = bus_name(rng.randrange(n_buses))
            route = f"R{n}"
            t0 = time.time()
            _version, payload = next_desired(store, bus, Assignment(route_id=route))
            store_ms.append((time.time() - t0) * 1000)
            await client.publish(topics.desired(bus), payload, qos=1, retain=True)
            sent[(bus, route)] = t0
    store.close()
    return sent, store_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buses", type=int, default=1000)
    parser.add_argument("--assignments", type=int, default=1000)
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="assignments per second; <= 0: all at once (a whole-fleet reassignment)",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes for the buses")
    parser.add_argument("--settle", type=float, default=3.0, help="wait after the last one")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 8 * args.buses + 256  # per bus: MQTT, listener, SSE both ends, broker side
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    with (
        tempfile.TemporaryDirectory(prefix="push-latency-") as tmp,
        run_mosquitto(Path(tmp) / "mosquitto") as broker,
    ):
        return run(args, broker.host, broker.port, Path(tmp))


def run(args: argparse.Namespace, host: str, port: int, tmp: Path) -> int:
    t_start = time.monotonic()
    db = tmp / "central.sqlite"
    buses_dir = tmp / "buses"
    buses_dir.mkdir()
    procs = start_workers(args.buses, args.workers, host, port, buses_dir)
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "ready":
                print(f"a worker failed to start: {line!r}", file=sys.stderr)
                return 1
        print(
            f"{args.buses} buses online with displays in {time.monotonic() - t_start:.1f} s; "
            f"{args.assignments} assignments at {args.rate:g}/s",
            file=sys.stderr,
        )
        sent, store_ms = asyncio.run(
            dispatch(host, port, db, args.buses, args.assignments, args.rate, args.seed)
        )
        time.sleep(args.settle)
        results: dict[str, Any] = {}
        for p in procs:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("done\n")
            p.stdin.flush()
            results.update(json.loads(p.stdout.readline()))
    finally:
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
            if p.poll() is None:
                p.kill()
    shown_ms, mqtt_ms, missing = [], [], 0
    for (bus, route), t0 in sent.items():
        r = results[bus]
        if route in r["shown"]:
            shown_ms.append((r["shown"][route] - t0) * 1000)
        elif not _superseded(sent, bus, route):
            missing += 1
        if route in r["mqtt"]:
            mqtt_ms.append((r["mqtt"][route] - t0) * 1000)
    report(args, shown_ms, mqtt_ms, store_ms, missing, len(sent))
    return 0


def _superseded(sent: dict[tuple[str, str], float], bus: str, route: str) -> bool:
    """A display may skip a state that a newer one replaced at once (it shows the latest)."""
    t0 = sent[(bus, route)]
    return any(b == bus and t > t0 for (b, _r), t in sent.items())


def report(
    args: argparse.Namespace,
    shown_ms: list[float],
    mqtt_ms: list[float],
    store_ms: list[float],
    missing: int,
    total: int,
) -> None:
    def row(name: str, values: list[float]) -> str:
        worst = max(values, default=float("nan"))
        return (
            f"{name:<44} n={len(values):>5}  p50 {percentile(values, 50):7.1f} ms"
            f"  p99 {percentile(values, 99):7.1f} ms  max {worst:7.1f} ms"
        )

    p99 = percentile(shown_ms, 99)
    print(row("assignment -> display shows it (SSE)", shown_ms))
    print(row("baseline: publish -> bus MQTT client has it", mqtt_ms))
    print(row("baseline: central store write (next_desired)", store_ms))
    verdict = "ok" if p99 < GOAL_P99_MS and missing == 0 else "over goal"
    print(f"goal p99 < {GOAL_P99_MS:.0f} ms with {args.buses} buses online: {verdict}")
    if missing:
        print(f"{missing} of {total} assignments never reached their display")
    print(
        json.dumps(
            {
                "buses": args.buses,
                "assignments": total,
                "rate_per_s": args.rate,
                "p50_ms": round(percentile(shown_ms, 50), 1),
                "p99_ms": round(p99, 1),
                "max_ms": round(max(shown_ms, default=float("nan")), 1),
                "mqtt_p50_ms": round(percentile(mqtt_ms, 50), 1),
                "mqtt_p99_ms": round(percentile(mqtt_ms, 99), 1),
                "store_p99_ms": round(percentile(store_ms, 99), 1),
                "missing": missing,
                "goal_p99_ms": GOAL_P99_MS,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--worker":
        first, count, host, port, data_dir = sys.argv[2:7]
        asyncio.run(worker_main(int(first), int(count), host, int(port), Path(data_dir)))
        raise SystemExit(0)
    raise SystemExit(main())
