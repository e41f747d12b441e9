"""`busfleet demo`: broker, central and a fleet of simulated buses, then the dashboard.

Every part runs as its own process, as in production: the broker, `busfleet central serve`
and one `busfleet sim bus` per bus (a real agent on simulated GPS and CAN). The demo owns
them: they die with it (PR_SET_PDEATHSIG) and it stops them all on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from busfleet.broker.launch import (
    Broker,
    die_with_parent,
    mosquitto_path,
    run_broker,
    run_embedded,
    run_mosquitto,
)
from busfleet.simbus import DEFAULT_GTFS
from central import client
from central.config import CentralConfig
from protocols import codec, topics
from protocols.errors import ProtocolError
from protocols.gtfs.feed import demo_trips, read_feed
from protocols.requests import Assign
from protocols.schemas import Assignment, CentralStats

CENTRAL_START_S = 30.0  # a cold start of `central serve` (imports, database) on a small board
# `--broker`: auto is mosquitto if installed, else the embedded one (amqtt, MQTT 3.1.1)
BROKERS: dict[str, Callable[..., contextlib.AbstractContextManager[Broker]]] = {
    "auto": run_broker,
    "mosquitto": run_mosquitto,
    "embedded": run_embedded,
}


@dataclass
class Fleet:
    """The demo's child processes and where they write."""

    workdir: Path
    broker: Broker
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.workdir / "central.sqlite"

    def spawn(self, name: str, args: list[str]) -> None:
        log = (self.workdir / "logs").joinpath(f"{name}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "busfleet.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            start_new_session=True,  # a Ctrl-C reaches the demo, which then stops its children
        )

    def crashed(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() not in (None, 0, -15)]

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def broker_args(broker: Broker) -> list[str]:
    protocol = "5" if broker.kind == "mosquitto" else "4"  # amqtt speaks MQTT 3.1.1 only
    return [
        "--mqtt-host",
        broker.host,
        "--mqtt-port",
        str(broker.port),
        "--mqtt-protocol",
        protocol,
    ]


async def assign_all(fleet: Fleet, assignments: dict[str, Assignment]) -> None:
    config = dataclasses.replace(
        CentralConfig(),
        db=str(fleet.db),
        mqtt_host=fleet.broker.host,
        mqtt_port=fleet.broker.port,
        mqtt_protocol=5 if fleet.broker.kind == "mosquitto" else 4,
    )
    # Central was just started: wait for it to come online, then ask it over one connection.
    async with client.connect(config, "demo", presence_wait_s=CENTRAL_START_S) as central:
        for bus, a in assignments.items():
            request = Assign(bus=bus, trip=a.trip_id, block=a.block_id, route=a.route_id)
            reply = await central.ask(client.envelope(request))
            if not reply.ok:
                raise RuntimeError(f"central refused the assignment of {bus}: {reply.error}")


def pick_trips(gtfs: Path, n: int) -> list[str]:
    """n trips on distinct routes, each bus a different one."""
    return demo_trips(read_feed(gtfs), n)


@contextlib.contextmanager
def start_fleet(
    workdir: Path,
    broker: Broker,
    buses: int,
    *,
    rate_hz: float = 1.0,
    gtfs: Path = DEFAULT_GTFS,
    progress: bool = True,
) -> Iterator[Fleet]:
    """Central and `buses` simulated buses on `broker`, until the block ends."""

    def say(text: str) -> None:
        if progress:
            print(f"[demo] {text}", file=sys.stderr, flush=True)

    fleet = Fleet(workdir, broker)
    try:
        fleet.spawn("central", ["central", "serve", "--db", str(fleet.db), *broker_args(broker)])
        say(f"central: serving, database {fleet.db}")
        feed = read_feed(gtfs)
        assignments = {}
        for i, trip in enumerate(demo_trips(feed, buses)):
            bus_id = f"bus-{i + 1:02d}"
            spawn_bus(fleet, bus_id, trip, i, rate_hz=rate_hz, gtfs=gtfs)
            route = feed.routes[feed.trips[trip].route_id]
            say(f"{bus_id}: driving trip {trip} (route {route.short_name})")
            assignments[bus_id] = Assignment(trip_id=trip, route_id=route.route_id)
        # Dispatch assigns each bus the trip it drives, as a dispatcher would: through its
        # desired state; the buses report it back and the dashboard shows route and trip.
        asyncio.run(assign_all(fleet, assignments))
        say(f"logs in {workdir / 'logs'}")
        yield fleet
    finally:
        say("stopping")
        fleet.stop()


def spawn_bus(
    fleet: Fleet,
    bus_id: str,
    trip: str,
    index: int,
    *,
    rate_hz: float = 1.0,
    gtfs: Path = DEFAULT_GTFS,
) -> None:
    """Start one simulated bus; its ground truth goes to <workdir>/<bus>.truth.jsonl."""
    fleet.spawn(
        bus_id,
        [
            "sim",
            "bus",
            "--id",
            bus_id,
            "--trip",
            trip,
            "--gtfs",
            str(gtfs),
            "--data-dir",
            str(fleet.workdir / bus_id),
            "--seed",
            str(index + 1),
            "--rate",
            str(rate_hz),
            "--start-fraction",
            str((index * 0.13) % 0.6),
            "--truth-log",
            str(fleet.workdir / f"{bus_id}.truth.jsonl"),
            *broker_args(fleet.broker),
        ],
    )


@contextlib.contextmanager
def running_fleet(
    workdir: Path, buses: int, *, rate_hz: float = 1.0, broker_kind: str = "auto"
) -> Iterator[Fleet]:
    """A broker (`BROKERS`: mosquitto, else embedded), central and the simulated buses."""
    if broker_kind == "mosquitto" and not mosquitto_path():
        raise SystemExit("busfleet demo: --broker mosquitto, but mosquitto is not installed")
    with BROKERS[broker_kind](workdir / "broker") as broker:
        print(f"[demo] broker: {broker.kind} on {broker.host}:{broker.port}", file=sys.stderr)
        with start_fleet(workdir, broker, buses, rate_hz=rate_hz) as fleet:
            yield fleet


def figures(fleet: Fleet) -> dict[str, int]:
    """What central has stored so far, read from its database."""
    if not fleet.db.exists():
        return {"buses_seen": 0, "positions_stored": 0}
    with contextlib.closing(sqlite3.connect(f"file:{fleet.db}?mode=ro", uri=True)) as db:
        try:
            buses, positions = db.execute(
                "SELECT COUNT(DISTINCT bus), COUNT(lat) FROM telemetry"
            ).fetchone()
        except sqlite3.OperationalError:  # central has not created its tables yet
            return {"buses_seen": 0, "positions_stored": 0}
    return {"buses_seen": int(buses), "positions_stored": int(positions)}


def rejected_by_central(fleet: Fleet) -> int:
    """Central's rejection counter, from the retained stats it publishes (1 if unreadable)."""
    try:
        stats = asyncio.run(_central_stats(fleet.broker))
    except (aiomqtt.MqttError, ProtocolError, TimeoutError) as exc:
        print(f"[demo] cannot read central's stats: {exc}", file=sys.stderr)
        return 1
    return int(stats.counters.get("rejected", 0))


async def _central_stats(broker: Broker) -> CentralStats:
    protocol = (
        aiomqtt.ProtocolVersion.V5 if broker.kind == "mosquitto" else aiomqtt.ProtocolVersion.V311
    )
    async with aiomqtt.Client(broker.host, broker.port, protocol=protocol) as client:
        await client.subscribe(topics.central_stats())
        async with asyncio.timeout(5):
            async for message in client.messages:
                # amqtt also hands a new subscriber retained messages of other topics
                if message.topic.matches(topics.central_stats()) and isinstance(
                    message.payload, bytes
                ):
                    return codec.decode(CentralStats, message.payload)
    raise TimeoutError("no stats from central")


def run_headless(
    buses: int, seconds: float, workdir: Path | None, rate_hz: float, broker_kind: str = "auto"
) -> int:
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="busfleet-demo-"))
            )
        with running_fleet(workdir, buses, rate_hz=rate_hz, broker_kind=broker_kind) as fleet:
            start = time.monotonic()
            next_report = start + 5
            try:
                while (elapsed := time.monotonic() - start) < seconds:
                    time.sleep(0.2)
                    if time.monotonic() >= next_report:
                        next_report += 5
                        f = figures(fleet)
                        print(
                            f"[demo] {elapsed:4.0f}/{seconds:.0f} s: {f['buses_seen']} buses seen, "
                            f"{f['positions_stored']} positions stored",
                            file=sys.stderr,
                            flush=True,
                        )
            except KeyboardInterrupt:
                print("[demo] interrupted", file=sys.stderr)
            crashed = fleet.crashed()
            for name in crashed:
                print(
                    f"[demo] {name} exited unexpectedly, see {workdir}/logs/{name}.log",
                    file=sys.stderr,
                )
            result = figures(fleet)
            result["errors"] = len(crashed) + rejected_by_central(fleet)
        print(json.dumps(result), flush=True)
    return 0 if result["errors"] == 0 else 1


def run_interactive(
    buses: int, workdir: Path | None, rate_hz: float, broker_kind: str = "auto"
) -> int:
    import dataclasses

    from central.config import CentralConfig
    from central.dashboard.app import create_app

    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="busfleet-demo-"))
            )
        fleet = stack.enter_context(
            running_fleet(workdir, buses, rate_hz=rate_hz, broker_kind=broker_kind)
        )
        config = dataclasses.replace(
            CentralConfig(),
            mqtt_host=fleet.broker.host,
            mqtt_port=fleet.broker.port,
            mqtt_username="dispatcher",
            mqtt_protocol=5 if fleet.broker.kind == "mosquitto" else 4,
        )
        with contextlib.suppress(KeyboardInterrupt):
            create_app(config).run()
    return 0
