"""Push latency: a dispatcher's assignment until the passenger display of that bus shows it.

Setup: a mosquitto on a free loopback port and `--buses` lightweight buses, spread over
`--workers` child processes. A lightweight bus is what of the agent takes part in the push:
an MQTT 5 client subscribed to its desired-state topic; per document what `Agent.on_desired`
does: `onboard.link.desired.evaluate`, the applied state saved in the bus's own SQLite file
(`AppliedStore`, WAL, synchronous=FULL) and `Display.apply_desired`; and a real
`onboard.display.Display` with its own HTTP server on a free port, which an SSE client (the
screen's browser, minus rendering) listens to at /display/events. No GPS, CAN, telemetry or
reported state: those do not lie on the path measured.

Measured: `--rate` assignments/s to random buses, by one of two paths.

- `--path service` (the default; production's path): the Cairns feed
  (data/gtfs/cairns_gtfs.zip) is imported into a fresh central database, a real
  `busfleet central serve` runs on it in a process of its own, and the dispatcher side sends
  typed `Assign(bus=..., route=...)` requests through central/client.py, as `busfleet central
  assign` and the dashboard do; the service checks the route against the feed, stores the
  next desired document and publishes it. Each assignment names a route of the feed that the
  bus has not had yet. Baselines from the same run: request sent -> central's reply, and the
  broker alone (a small probe, published on a connection of the bench right after each
  request, until the same bus's MQTT client has it).
- `--path direct` (the path before central became the only writer; kept so a figure
  comparable with earlier runs stays available): the bench itself stores the next desired
  document in central's SQLite by `next_desired` (no feed: anything goes) and publishes it
  retained with QoS 1 on one connection, each with a new route id. Baselines: the store write
  alone, and the broker alone (that publish until the bus's MQTT client has it).

The latency of one assignment runs from just before the request is sent (service) or the
store write (direct) to the SSE event that carries the new line (the display's fallback label
is the assigned route id) arriving at that bus's screen client; "-> bus MQTT client" rows run
from the same start to the bus's MQTT client having the document.

Run: .venv/bin/python bench/push_latency.py [--path service|direct] [--buses 1000]
[--assignments 1000] [--rate 50] (`--rate 0`: every assignment at once, the worst case of a
whole-fleet reassignment). Progress goes to stderr; figures to stdout; the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere

import aiohttp  # noqa: E402 - after the path fix above
import aiomqtt  # noqa: E402

from busfleet.broker.launch import run_mosquitto  # noqa: E402
from central import client  # noqa: E402
from central.assign import next_desired  # noqa: E402
from central.config import CentralConfig  # noqa: E402
from central.errors import NoAnswer  # noqa: E402
from central.gtfs_import import import_gtfs  # noqa: E402
from central.store import gtfs as gtfs_db  # noqa: E402
from central.store.db import CentralStore  # noqa: E402
from onboard.display import Display  # noqa: E402
from onboard.link.desired import AppliedStore, evaluate  # noqa: E402
from onboard.store import open_store  # noqa: E402
from protocols import topics  # noqa: E402
from protocols.requests import Assign  # noqa: E402
from protocols.schemas import Assignment, DesiredState  # noqa: E402

GOAL_P99_MS = 500.0
FEED = REPO / "data" / "gtfs" / "cairns_gtfs.zip"
PROBE_ROOT = "bench/push-latency/probe"  # outside busfleet/v1: no part of the protocol
REPLY_TIMEOUT_S = 30.0
SERVICE_START_S = 60.0  # the service's imports and start, while the buses come up

Event = tuple[str, float]  # (route id or probe id, unix time it arrived)


def bus_name(i: int) -> str:
    return f"bus-{i:04d}"


def probe_topic(bus_id: str) -> str:
    return f"{PROBE_ROOT}/{bus_id}"


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
        self.store = AppliedStore(open_store(data_dir / f"{bus_id}.sqlite"))  # as the agent
        self.host, self.port = host, port
        self.display = Display("127.0.0.1", 0, heartbeat_s=60.0)
        self.applied: DesiredState | None = None
        # Lists, not dicts by route: with a real feed a bus may get a route again later.
        self.mqtt_seen: list[Event] = []  # each desired document's route, as it arrived
        self.shown: list[Event] = []  # each new line on the screen, as it arrived
        self.probes: list[Event] = []  # the bench's probes (broker alone)
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
            await client.subscribe(probe_topic(self.bus_id), qos=1)
            self.subscribed.set()
            async for message in client.messages:
                now = time.time()
                if not isinstance(message.payload, bytes):
                    continue
                if message.topic.value.startswith(PROBE_ROOT):
                    self.probes.append((message.payload.decode(), now))
                    continue
                outcome = evaluate(self.applied, message.payload, self.bus_id)
                if outcome.applied is not None and outcome.applied != self.applied:
                    self.store.save(outcome.applied)
                self.applied = outcome.applied
                if self.applied and self.applied.assignment and self.applied.assignment.route_id:
                    self.mqtt_seen.append((self.applied.assignment.route_id, now))
                self.display.apply_desired(self.applied)  # what Agent.on_desired does

    async def run_screen(self, session: aiohttp.ClientSession) -> None:
        url = f"http://127.0.0.1:{self.display.port}/display/events"
        last = ""
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                now = time.time()
                line_shown = json.loads(line[6:])["state"]["line"]
                self.listening.set()
                if line_shown and line_shown != last:
                    self.shown.append((line_shown, now))
                last = line_shown


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
            b.bus_id: {"mqtt": b.mqtt_seen, "shown": b.shown, "probes": b.probes} for b in buses
        }
        print(json.dumps(results), flush=True)
        os._exit(0)  # the 500 servers and connections need no orderly goodbye


# -- the dispatcher side ------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Sent:
    """One assignment as the dispatcher side made it; unix times, so the workers' compare."""

    bus: str
    route: str
    t0: float = 0.0  # just before the request (service) or the store write (direct)
    t_publish: float = 0.0  # direct: just before the publish
    t_probe: float = 0.0  # service: just before the probe's publish
    store_ms: float | None = None  # direct: next_desired alone
    reply_ms: float | None = None  # service: request sent -> reply received
    refused: str = ""  # service: why central refused it or did not answer


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


def feed_routes(db: Path) -> list[str]:
    """Import the Cairns feed into a new central database; the route ids it knows."""
    started = time.monotonic()
    store = CentralStore(db)
    try:
        import_gtfs(store, FEED)
        with zipfile.ZipFile(FEED) as z, z.open("routes.txt") as f:
            ids = [row["route_id"] for row in csv.DictReader(io.TextIOWrapper(f, "utf-8-sig"))]
        routes = sorted(r for r in ids if gtfs_db.route_exists(store, r))
    finally:
        store.close()
    print(
        f"feed {FEED.name} imported in {time.monotonic() - started:.1f} s: {len(routes)} routes",
        file=sys.stderr,
    )
    return routes


def plan(n_buses: int, n_assign: int, routes: list[str] | None, seed: int) -> list[Sent]:
    """Who gets what. Without routes (direct): a new id each time, as before. With a feed's
    routes: one the bus has not had yet (the least recently given once it had them all), so
    a display never skips an assignment because it already showed that line."""
    rng = random.Random(seed)
    given: dict[str, list[str]] = {}  # bus -> its routes, oldest first
    out: list[Sent] = []
    for n in range(n_assign):
        bus = bus_name(rng.randrange(n_buses))
        if routes is None:
            route = f"R{n}"
        else:
            had = given.setdefault(bus, [])
            fresh = [r for r in routes if r not in had]
            route = rng.choice(fresh) if fresh else had[0]
            if route in had:
                had.remove(route)
            had.append(route)
        out.append(Sent(bus, route))
    return out


async def _paced(rate: float, n: int, start: float) -> None:
    if rate > 0:
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))


async def dispatch_direct(host: str, port: int, db: Path, sent: list[Sent], rate: float) -> None:
    """What `central assign` did before the service was the only writer: store, publish."""
    store = CentralStore(db)
    async with aiomqtt.Client(
        host, port, identifier="central-bench", protocol=aiomqtt.ProtocolVersion.V5
    ) as mqtt_client:
        start = time.monotonic()
        for n, s in enumerate(sent):
            await _paced(rate, n, start)
            s.t0 = time.time()
            _version, payload = next_desired(store, s.bus, Assignment(route_id=s.route))
            s.t_publish = time.time()
            s.store_ms = (s.t_publish - s.t0) * 1000
            await mqtt_client.publish(topics.desired(s.bus), payload, qos=1, retain=True)
    store.close()


async def dispatch_service(config: CentralConfig, sent: list[Sent], rate: float) -> None:
    """Typed `Assign` requests to the running service, each in a task of its own (many
    dispatchers at once), with a broker-alone probe to the same bus beside each."""
    async with (
        client.connect(config, "bench", presence_wait_s=SERVICE_START_S) as requests,
        aiomqtt.Client(
            config.mqtt_host,
            config.mqtt_port,
            identifier="bench-probe",
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as probe,
        asyncio.TaskGroup() as tg,
    ):
        start = time.monotonic()
        for n, s in enumerate(sent):
            await _paced(rate, n, start)
            tg.create_task(_assign_one(requests, probe, s, n), name=f"assign-{n}")


async def _assign_one(requests: client.Requests, probe: aiomqtt.Client, s: Sent, n: int) -> None:
    async def ask() -> None:
        try:
            reply = await requests.ask(
                client.envelope(Assign(bus=s.bus, route=s.route)), REPLY_TIMEOUT_S
            )
        except NoAnswer as exc:
            s.refused = str(exc)
            return
        s.reply_ms = (time.time() - s.t0) * 1000
        if not reply.ok:
            s.refused = reply.error or "refused"

    async def send_probe() -> None:
        s.t_probe = time.time()
        await probe.publish(probe_topic(s.bus), str(n).encode(), qos=1)

    s.t0 = time.time()
    # The request goes on the wire first (gather starts them in order), the probe after.
    await asyncio.gather(ask(), send_probe())


def start_service(db: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    """`busfleet central serve` on the bench's broker and database, as deployed: a process
    of its own (no HTTP server: nothing here asks it)."""
    cmd = [sys.executable, "-m", "busfleet.cli", "central", "serve", "--db", str(db)]
    cmd += ["--mqtt-host", host, "--mqtt-port", str(port), "--http-port", "0"]
    cmd += ["--client-id", "central-bench", "--log-level", "WARNING"]
    return subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--path",
        choices=("service", "direct"),
        default="service",
        help="service: typed requests to a running central (default); "
        "direct: the bench writes the store and publishes (the old path)",
    )
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
    service: subprocess.Popen[bytes] | None = None
    if args.path == "service":
        sent = plan(args.buses, args.assignments, feed_routes(db), args.seed)
        service = start_service(db, host, port)  # starts while the buses come up
    else:
        sent = plan(args.buses, args.assignments, None, args.seed)
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
            f"{args.assignments} assignments at {args.rate:g}/s by the {args.path} path",
            file=sys.stderr,
        )
        if service is not None:
            if service.poll() is not None:
                print(f"central serve exited with {service.returncode}", file=sys.stderr)
                return 1
            config = dataclasses.replace(
                CentralConfig(),
                db=str(db),
                mqtt_host=host,
                mqtt_port=port,
                mqtt_username="dispatcher",
                client_id="bench",
            )
            asyncio.run(dispatch_service(config, sent, args.rate))
        else:
            asyncio.run(dispatch_direct(host, port, db, sent, args.rate))
        time.sleep(args.settle)
        results: dict[str, Any] = {}
        for p in procs:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("done\n")
            p.stdin.flush()
            results.update(json.loads(p.stdout.readline()))
    finally:
        if service is not None and service.poll() is None:
            service.terminate()  # SIGTERM: it says offline and closes its database
        children: list[subprocess.Popen[Any]] = [*procs]
        if service is not None:
            children.append(service)
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(10)
            if child.poll() is None:
                child.kill()
    report(args, sent, results)
    return 0


def _first_after(events: list[list[Any]], key: str, t0: float) -> float | None:
    """When `key` first arrived at or after t0 (events come in arrival order)."""
    for k, t in events:
        if k == key and t >= t0:
            return float(t)
    return None


def _superseded(sent: list[Sent], i: int) -> bool:
    """A display may skip a state that a newer one replaced at once (it shows the latest)."""
    return any(s.bus == sent[i].bus for s in sent[i + 1 :])


def report(args: argparse.Namespace, sent: list[Sent], results: dict[str, Any]) -> None:
    shown_ms: list[float] = []
    mqtt_ms: list[float] = []
    broker_ms: list[float] = []
    missing = 0
    for i, s in enumerate(sent):
        r = results[s.bus]
        if args.path == "service":
            t_probe = _first_after(r["probes"], str(i), s.t_probe)
            if t_probe is not None:
                broker_ms.append((t_probe - s.t_probe) * 1000)
            if s.refused:
                continue  # counted below; nothing was published
        t_mqtt = _first_after(r["mqtt"], s.route, s.t0)
        if t_mqtt is not None:
            mqtt_ms.append((t_mqtt - s.t0) * 1000)
            if args.path == "direct":
                broker_ms.append((t_mqtt - s.t_publish) * 1000)
        t_shown = _first_after(r["shown"], s.route, s.t0)
        if t_shown is not None:
            shown_ms.append((t_shown - s.t0) * 1000)
        elif not _superseded(sent, i):
            missing += 1
    refused = [s.refused for s in sent if s.refused]
    store_ms = [s.store_ms for s in sent if s.store_ms is not None]
    reply_ms = [s.reply_ms for s in sent if s.reply_ms is not None]

    def row(name: str, values: list[float]) -> str:
        worst = max(values, default=float("nan"))
        return (
            f"{name:<46} n={len(values):>5}  p50 {percentile(values, 50):7.1f} ms"
            f"  p99 {percentile(values, 99):7.1f} ms  max {worst:7.1f} ms"
        )

    p99 = percentile(shown_ms, 99)
    print(f"path: {args.path}")
    print(row("assignment -> display shows it (SSE)", shown_ms))
    print(row("assignment -> bus MQTT client has it", mqtt_ms))
    if args.path == "service":
        print(row("baseline: request sent -> central's reply", reply_ms))
        print(row("baseline: broker alone (probe -> bus MQTT)", broker_ms))
    else:
        print(row("baseline: central store write (next_desired)", store_ms))
        print(row("baseline: broker alone (publish -> bus MQTT)", broker_ms))
    ok = p99 < GOAL_P99_MS and missing == 0 and not refused
    print(
        f"goal p99 < {GOAL_P99_MS:.0f} ms with {args.buses} buses online: "
        f"{'ok' if ok else 'over goal'}"
    )
    if missing:
        print(f"{missing} of {len(sent)} assignments never reached their display")
    if refused:
        print(f"{len(refused)} of {len(sent)} assignments refused or unanswered: {refused[0]}")
    figures: dict[str, Any] = {
        "path": args.path,
        "buses": args.buses,
        "assignments": len(sent),
        "rate_per_s": args.rate,
        "p50_ms": round(percentile(shown_ms, 50), 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(shown_ms, default=float("nan")), 1),
        "mqtt_p50_ms": round(percentile(mqtt_ms, 50), 1),
        "mqtt_p99_ms": round(percentile(mqtt_ms, 99), 1),
        "broker_p50_ms": round(percentile(broker_ms, 50), 1),
        "broker_p99_ms": round(percentile(broker_ms, 99), 1),
    }
    if args.path == "service":
        figures["reply_p50_ms"] = round(percentile(reply_ms, 50), 1)
        figures["reply_p99_ms"] = round(percentile(reply_ms, 99), 1)
        figures["refused"] = len(refused)
    else:
        figures["store_p99_ms"] = round(percentile(store_ms, 99), 1)
    figures["missing"] = missing
    figures["goal_p99_ms"] = GOAL_P99_MS
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--worker":
        first, count, host, port, data_dir = sys.argv[2:7]
        asyncio.run(worker_main(int(first), int(count), host, int(port), Path(data_dir)))
        raise SystemExit(0)
    raise SystemExit(main())
