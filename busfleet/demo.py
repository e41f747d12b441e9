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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from busfleet.broker.launch import (
    Broker,
    die_with_parent,
    free_port,
    mosquitto_path,
    run_broker,
    run_embedded,
    run_mosquitto,
)
from busfleet.demo_figures import (
    database_figures,
    fleet_entries,
    plays_stored,
    rejected_by_central,
    timetable,
)
from busfleet.demo_mission import (
    DIVERSION_AFTER_S,
    PAGE_NAMES,
    PLAYLIST,
    BusPorts,
    Mission,
    MissionRefused,
    answering,
    display_figures,
    stage_mission,
    urls,
)
from busfleet.simbus import DEFAULT_GTFS
from central import client
from central.config import CentralConfig
from central.errors import CentralError
from hw_sim.feed_today import TripNow, trips_now, write_feed_today
from protocols.errors import GtfsError
from protocols.gtfs.feed import Feed, demo_trips, read_feed
from protocols.requests import Assign, ImportGtfs, PublishTimetable
from protocols.schemas import Assignment

CENTRAL_START_S = 30.0  # a cold start of `central serve` (imports, database) on a small board
# A bus of the demo starts at most this far before its next stop. From a standstill it is there
# in about 20 s, dwells 8 to 25 s and is past the stop's zone some 7 s later: a one-minute run
# sees it serve a stop. Further (trips_now's next stop may be 800 m away), a bus arrives only
# after 30 to 60 s and few or none of a minute's run leave a stop. Nearer than trips_now's
# MIN_AHEAD_M (80 m), the agent might not track before the bus is there.
APPROACH_M = 120.0
OPEN_WAIT_S = 20.0  # `--open`: at most this long for a page to answer before it is opened
# `--broker`: auto is mosquitto if installed, else the embedded one (amqtt, MQTT 3.1.1)
BROKERS: dict[str, Callable[..., contextlib.AbstractContextManager[Broker]]] = {
    "auto": run_broker,
    "mosquitto": run_mosquitto,
    "embedded": run_embedded,
}

Say = Callable[[str], None]


class DemoFailed(Exception):
    """The demo could not be set up: central cannot be asked, or it refused; says why."""


@dataclass
class Fleet:
    """The demo's child processes and where they write."""

    workdir: Path
    broker: Broker
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    timetable_version: int | None = None  # the version central published (timetable mode)
    trips: dict[str, str] = field(default_factory=dict)  # bus -> the trip it drives
    ports: dict[str, BusPorts] = field(default_factory=dict)  # bus -> where its pages are
    mission: Mission | None = None  # the ads, message and diversion (timetable mode)

    @property
    def db(self) -> Path:
        return self.workdir / "central.sqlite"

    @property
    def feed_today(self) -> Path:
        """The bundled feed mapped onto today (hw_sim/feed_today.py), as central imports it."""
        return self.workdir / "feed-today.zip"

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


def central_config(fleet: Fleet) -> CentralConfig:
    """How the demo reaches its central, as a dispatcher's tool would."""
    return dataclasses.replace(
        CentralConfig(),
        db=str(fleet.db),
        mqtt_host=fleet.broker.host,
        mqtt_port=fleet.broker.port,
        mqtt_protocol=5 if fleet.broker.kind == "mosquitto" else 4,
    )


async def assign_all(fleet: Fleet, assignments: dict[str, Assignment]) -> None:
    # Central was just started: wait for it to come online, then ask it over one connection.
    async with client.connect(
        central_config(fleet), "demo", presence_wait_s=CENTRAL_START_S
    ) as central:
        for bus, a in assignments.items():
            request = Assign(bus=bus, trip=a.trip_id, block=a.block_id, route=a.route_id)
            reply = await central.ask(client.envelope(request))
            if not reply.ok:
                raise DemoFailed(f"central refused the assignment of {bus}: {reply.error}")


async def import_and_publish(fleet: Fleet, feed: Path) -> int:
    """Upload `feed` to central, import it and publish the new version to all buses, as
    `busfleet central import-gtfs` and `busfleet central timetable publish` ask; the version."""
    async with client.connect(
        central_config(fleet), "demo", presence_wait_s=CENTRAL_START_S
    ) as central:

        async def ask(request: ImportGtfs | PublishTimetable) -> dict[str, object]:
            reply = await central.ask(client.envelope(request))
            if not reply.ok:
                raise DemoFailed(f"central refused {type(request).__name__}: {reply.error}")
            return dict(reply.result)

        upload = await client.upload(lambda r: central.ask(client.envelope(r)), feed)
        imported = await ask(ImportGtfs(upload=upload, name=feed.name))
        version = imported.get("timetable_version")
        if not isinstance(version, int):
            raise DemoFailed(f"central's import named no timetable version: {imported}")
        await ask(PublishTimetable(version=version, valid_from=None, to=["all"]))
        return version


async def stage(
    fleet: Fleet, buses: list[str], feed: Feed, trip_id: str, start_m: float
) -> Mission:
    """Ads, a message and a diversion, asked of central (busfleet/demo_mission.py)."""
    async with client.connect(
        central_config(fleet), "demo", presence_wait_s=CENTRAL_START_S
    ) as central:
        try:
            return await stage_mission(
                lambda r: central.ask(client.envelope(r)),
                fleet.workdir,
                buses,
                feed=feed,
                trip_id=trip_id,
                start_m=start_m,
                now=time.time(),
            )
        except MissionRefused as exc:
            raise DemoFailed(str(exc)) from exc


def pick_trips(gtfs: Path, n: int) -> list[str]:
    """n trips on distinct routes, each bus a different one."""
    return demo_trips(read_feed(gtfs), n)


def along(feed: Feed, trip_id: str, index: int) -> TripNow:
    """A demo trip from a little way along (different for each `index`), whenever it runs."""
    length = feed.trip_path(trip_id)[0].length_m
    return TripNow(trip_id, feed.trips[trip_id].route_id, length * (index * 0.13 % 0.6), length)


def trips_for(feed: Feed, buses: int, now: float, say: Say) -> list[TripNow]:
    """A trip running now for each bus and where its schedule has it (`trips_now`), moved up
    to APPROACH_M before its next stop (`near_a_stop`); if too few run, demo trips from a
    little way along, whenever they are scheduled."""
    chosen = [near_a_stop(t) for t in trips_now(feed, now, buses)]
    if len(chosen) < buses:
        say(f"only {len(chosen)} trips run now: the other buses drive off schedule")
    taken = {t.trip_id for t in chosen}
    spare = [tid for tid in demo_trips(feed, buses + len(taken)) if tid not in taken]
    for i, tid in enumerate(spare[: buses - len(chosen)], start=len(chosen)):
        chosen.append(along(feed, tid, i))
    return chosen


def near_a_stop(trip: TripNow) -> TripNow:
    """`trip` from APPROACH_M before its next stop, if its schedule has it further away: the
    bus starts a little early (the schedule's time for the distance skipped, a minute or two
    at most) and serves a stop within the first minute."""
    skip = trip.next_stop_m - APPROACH_M
    if skip <= 0 or trip.dist_m + trip.next_stop_m >= trip.length_m:
        return trip  # near enough, or no stop ahead (then there is nothing to serve anyway)
    return dataclasses.replace(trip, dist_m=trip.dist_m + skip, next_stop_m=APPROACH_M)


def publish_today(fleet: Fleet, gtfs: Path, say: Say) -> Path:
    """Map `gtfs` onto today, have central import and publish it; the mapped feed."""
    today = write_feed_today(gtfs, fleet.feed_today, time.time())
    say(
        f"timetable: {gtfs.name} mapped onto today, {today.service_date} (the service of "
        f"{today.reference_date:%A %Y-%m-%d}, its clock {today.timezone})"
    )
    fleet.timetable_version = asyncio.run(import_and_publish(fleet, fleet.feed_today))
    say(f"central: imported and published timetable version {fleet.timetable_version}")
    return fleet.feed_today


def _setup(
    fleet: Fleet, buses: int, rate_hz: float, gtfs: Path, timetable_now: bool, say: Say
) -> None:
    serve = ["central", "serve", "--db", str(fleet.db), *broker_args(fleet.broker)]
    if timetable_now:  # buses download the timetable from central's HTTP server
        serve += ["--http-port", str(free_port())]
    fleet.spawn("central", serve)
    say(f"central: serving, database {fleet.db}")
    if timetable_now:
        gtfs = publish_today(fleet, gtfs, say)
    feed = read_feed(gtfs)
    if timetable_now:
        chosen = trips_for(feed, buses, time.time(), say)
    else:
        chosen = [along(feed, tid, i) for i, tid in enumerate(demo_trips(feed, buses))]
    assignments = {}
    starts: dict[str, TripNow] = {}
    for i, trip in enumerate(chosen):
        bus_id = f"bus-{i + 1:02d}"
        # Each bus's display and driver terminal on ports of its own; bus-01 also runs the
        # passenger Wi-Fi portal, so that a newcomer can open all three.
        fleet.ports[bus_id] = BusPorts(free_port(), free_port(), free_port() if i == 0 else None)
        spawn_bus(
            fleet,
            bus_id,
            trip.trip_id,
            i,
            rate_hz=rate_hz,
            gtfs=gtfs,
            start_fraction=trip.start_fraction,
            local_feed=not timetable_now,
            ports=fleet.ports[bus_id],
        )
        fleet.trips[bus_id] = trip.trip_id
        starts[bus_id] = trip
        route = feed.routes[trip.route_id]
        ahead = f", {trip.next_stop_m:.0f} m before a stop" if trip.next_stop_m else ""
        say(
            f"{bus_id}: driving trip {trip.trip_id} (route {route.short_name}) from "
            f"{trip.start_fraction:.0%} of its way{ahead}"
        )
        assignments[bus_id] = Assignment(trip_id=trip.trip_id, route_id=route.route_id)
    # Dispatch assigns each bus the trip it drives, as a dispatcher would: through its
    # desired state; the buses report it back and the dashboard shows route and trip.
    asyncio.run(assign_all(fleet, assignments))
    if timetable_now:
        first = next(iter(starts))
        fleet.mission = asyncio.run(
            stage(fleet, list(starts), feed, starts[first].trip_id, starts[first].dist_m)
        )
        m = fleet.mission
        say(
            f"central: {len(m.media)} generated ads in playlist {PLAYLIST} on every bus, a "
            f"passenger message to all buses, route {m.diversion_route} diverted in "
            f"{DIVERSION_AFTER_S:.0f} s"
        )
        for name, url in urls(fleet.ports[first]).items():
            say(f"{first}: {PAGE_NAMES[name]} {url}")


@contextlib.contextmanager
def start_fleet(
    workdir: Path,
    broker: Broker,
    buses: int,
    *,
    rate_hz: float = 1.0,
    gtfs: Path = DEFAULT_GTFS,
    progress: bool = True,
    timetable_now: bool = False,
) -> Iterator[Fleet]:
    """Central and `buses` simulated buses on `broker`, until the block ends.

    `timetable_now` (the demo): central imports `gtfs` mapped onto today (hw_sim/feed_today.py)
    and publishes it; the buses have no copy of their own, get it from central, and drive
    trips running now from where their schedule has them. Otherwise each bus reads `gtfs`
    itself and drives a demo trip from a little way along, whenever that is scheduled.
    DemoFailed if central cannot be asked or refuses.
    """

    def say(text: str) -> None:
        if progress:
            print(f"[demo] {text}", file=sys.stderr, flush=True)

    fleet = Fleet(workdir, broker)
    try:
        try:
            _setup(fleet, buses, rate_hz, gtfs, timetable_now, say)
        except (CentralError, GtfsError) as exc:
            raise DemoFailed(str(exc)) from exc
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
    start_fraction: float | None = None,
    local_feed: bool = True,
    ports: BusPorts | None = None,
) -> None:
    """Start one simulated bus; its ground truth goes to <workdir>/<bus>.truth.jsonl.

    `start_fraction` None: a little way along, different for each `index`; `local_feed`
    False: the agent has no copy of the feed and waits for central's timetable; `ports`
    None: display and driver terminal on any free port, no portal."""
    pages = []
    if ports is not None:
        pages = ["--display-port", str(ports.display), "--driver-port", str(ports.driver)]
        if ports.portal is not None:
            pages += ["--portal-port", str(ports.portal)]
    fraction = (index * 0.13) % 0.6 if start_fraction is None else start_fraction
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
            f"{fraction:.6f}",
            "--truth-log",
            str(fleet.workdir / f"{bus_id}.truth.jsonl"),
            *([] if local_feed else ["--no-local-feed"]),
            *pages,
            *broker_args(fleet.broker),
        ],
    )


@contextlib.contextmanager
def running_fleet(
    workdir: Path, buses: int, *, rate_hz: float = 1.0, broker_kind: str = "auto"
) -> Iterator[Fleet]:
    """A broker (`BROKERS`: mosquitto, else embedded), central with today's timetable and the
    simulated buses on it."""
    if broker_kind == "mosquitto" and not mosquitto_path():
        raise SystemExit("busfleet demo: --broker mosquitto, but mosquitto is not installed")
    with BROKERS[broker_kind](workdir / "broker") as broker:
        print(f"[demo] broker: {broker.kind} on {broker.host}:{broker.port}", file=sys.stderr)
        with start_fleet(workdir, broker, buses, rate_hz=rate_hz, timetable_now=True) as fleet:
            yield fleet


def first_bus_urls(fleet: Fleet) -> dict[str, str]:
    """bus-01's pages: passenger display, driver terminal, Wi-Fi portal."""
    first = next(iter(fleet.ports), None)
    return {} if first is None else urls(fleet.ports[first])


def mission_figures(fleet: Fleet) -> dict[str, int]:
    """Plays central stored, and the buses whose displays show the message and a diversion."""
    message = fleet.mission.message_id if fleet.mission else None
    return {"plays_stored": plays_stored(fleet.db), **display_figures(fleet.ports, message)}


def final_figures(fleet: Fleet) -> dict[str, object]:
    """The last line's figures: central's database, the buses' timetable and delays as
    central's fleet entries have them, the day's ads, message and diversion (plays stored,
    the buses whose displays show the message and a diversion), bus-01's `urls`, and `errors`
    (processes that died, and what central rejected)."""
    crashed = fleet.crashed()
    for name in crashed:
        print(
            f"[demo] {name} exited unexpectedly, see {fleet.workdir}/logs/{name}.log",
            file=sys.stderr,
        )
    result: dict[str, object] = {**database_figures(fleet.db)}
    result.update(timetable(fleet_entries(fleet.broker), fleet.timetable_version))
    result.update(mission_figures(fleet))
    result["urls"] = first_bus_urls(fleet)
    result["errors"] = len(crashed) + rejected_by_central(fleet.broker)
    return result


def open_pages(fleet: Fleet) -> None:
    """bus-01's pages in the browser (`--open`)."""
    import webbrowser

    for url in first_bus_urls(fleet).values():
        answering(url, OPEN_WAIT_S)  # the agent binds its sites a moment after it starts
        if not webbrowser.open_new_tab(url):
            print(f"[demo] no browser to open {url}", file=sys.stderr)


def run_headless(
    buses: int,
    seconds: float,
    workdir: Path | None,
    rate_hz: float,
    broker_kind: str = "auto",
    open_browser: bool = False,
) -> int:
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="busfleet-demo-"))
            )
        try:
            fleet = stack.enter_context(
                running_fleet(workdir, buses, rate_hz=rate_hz, broker_kind=broker_kind)
            )
        except DemoFailed as exc:
            print(f"[demo] cannot start: {exc}", file=sys.stderr)
            print(json.dumps({"errors": 1}), flush=True)
            return 1
        if open_browser:
            open_pages(fleet)
        start = time.monotonic()
        next_report = start + 5
        try:
            while (elapsed := time.monotonic() - start) < seconds:
                time.sleep(0.2)
                if time.monotonic() >= next_report:
                    next_report += 5
                    f = {**database_figures(fleet.db), **mission_figures(fleet)}
                    print(
                        f"[demo] {elapsed:4.0f}/{seconds:.0f} s: {f['buses_seen']} buses seen, "
                        f"{f['positions_stored']} positions stored, "
                        f"{f['stops_passed']} stops passed, {f['plays_stored']} plays stored, "
                        f"message on {f['messages_shown']} displays, "
                        f"diversion on {f['diversions_active']}",
                        file=sys.stderr,
                        flush=True,
                    )
        except KeyboardInterrupt:
            print("[demo] interrupted", file=sys.stderr)
        result = final_figures(fleet)
    print(json.dumps(result), flush=True)
    return 0 if result["errors"] == 0 else 1


def run_interactive(
    buses: int,
    workdir: Path | None,
    rate_hz: float,
    broker_kind: str = "auto",
    open_browser: bool = False,
) -> int:
    from central.dashboard.app import create_app

    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="busfleet-demo-"))
            )
        try:
            fleet = stack.enter_context(
                running_fleet(workdir, buses, rate_hz=rate_hz, broker_kind=broker_kind)
            )
        except DemoFailed as exc:
            print(f"[demo] cannot start: {exc}", file=sys.stderr)
            return 1
        if open_browser:
            open_pages(fleet)
        config = dataclasses.replace(central_config(fleet), mqtt_username="dispatcher")
        with contextlib.suppress(KeyboardInterrupt):
            create_app(config).run()
    return 0
