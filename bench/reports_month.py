"""Reports at a month of a fleet (issue 15): every report the dashboard and the CLI offer,
timed on central's database holding 100 buses x 30 days.

The fill (skipped with --reuse PATH): the Cairns GTFS feed is imported (routes, trips, stops
and the timezone the reports count days in), then per local day and bus, during service hours
(05:00 to 24:00 local: 19 h a day, not 24; --service changes it), what the agent really emits:

- telemetry every 10 s (position and vehicle data): 6,840 rows a bus-day;
- journey events of the assigned route's trips (onboard/journey/tracker.py): a stop every 90 s,
  70 % of them served (`arrived`, `departed`), 30 % `passed`, with the delay, plus
  `trip_started` / `trip_finished`; 45-minute trips, 5-minute layovers;
- door events at each served stop (protocols/j1939/vehicle.py: `doors_opened`, `doors_closed`,
  and per door, two doors, `door_opened` / `door_closed`);
- proof of play (onboard/ads/player.py `PlayRecord.data()`): a 15-s item every 30 s of
  service, from 12 items of 4 campaign playlists;
- `portal_stats` every 15 minutes (onboard/portal/service.py), 4 `passenger_feedback`, a
  `gps_lost` / `gps_regained`, a `driver_message`; 2 driver messages sent (commands, answered)
  and their `driver_ack`; an alarm (closed) per bus and day.

Rows go in through the store's own insert functions (`add_records`, `add_events`: the
ingest's executemany), one transaction per day; the plays are copied into the report table
after each day, as a running central does when reports are asked. Progress on stderr.

Backends (issue 15): the month is always filled into SQLite (--db, or a temporary file); with
--backend postgresql or both it is then copied into PostgreSQL by COPY (central/store/pg_copy.py:
the same rows, the report tables included), into --pg-url (an empty database) or, without
one, a throwaway cluster started as the tests start theirs (tests/postgres_helpers.py).
`--reuse PATH --backend postgresql` copies an already filled SQLite month instead of filling.

Then each report runs --runs times (median seconds) on each backend, beside the baselines of
the same run (a full COUNT(*) of telemetry; the count of departures, the rows punctuality
reads). Reports are asked at `now` = the end of the last filled day's service. The last line
printed is one JSON object: `fill`, `copy` (PostgreSQL), and per backend under `backends`:
`reports` (seconds each), `rows` (rows each answered), `baseline`; `same_rows` says whether
both backends answered every report with as many rows.

Run: .venv/bin/python bench/reports_month.py [--buses 100] [--days 30] [--db PATH]
     [--backend sqlite|postgresql|both] [--pg-url URL] [--reuse PATH|URL] [--runs 3].
The full size is 20.5 M telemetry rows and 17.9 M events (8.4 GB on disk, about 10 minutes
to fill on 2 cores); --buses/--days scale it down.

Measured (2 shared cores, --backend postgresql: PostgreSQL 15, fsync and synchronous_commit on):
the copy into PostgreSQL takes 11-12 minutes for 47.3 M rows (VACUUM included), 13.1 GB on
disk. Slowest reports, SQLite / PostgreSQL: plays_cli_month 0.45 / 0.62 s, its one-item form
0.36 / 0.57 s, punctuality_31d 0.21 / 0.23 s, driver_log_month 0.16 / 0.13 s; every other
report under 0.1 s on both; every one answers with as many rows on both. The GTFS-RT feeds do
not run on PostgreSQL yet (the diversions' store is not ported).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from central.driver import COMMAND, driver_log  # noqa: E402
from central.gtfs_import import import_gtfs  # noqa: E402
from central.http.server import Realtime  # noqa: E402
from central.messages import create_message  # noqa: E402
from central.reports import day_bounds, plays_report, refresh_plays  # noqa: E402
from central.service import queries  # noqa: E402
from central.store import alarms as alarms_db  # noqa: E402
from central.store import gtfs as gtfs_db  # noqa: E402
from central.store import queries as query_db  # noqa: E402
from central.store.backend import NotPorted, is_postgres_url  # noqa: E402
from central.store.db import CentralStore  # noqa: E402
from central.store.pg_copy import copy_to_postgres, database_bytes  # noqa: E402
from central.store.pg_store import PgCentralStore, open_store  # noqa: E402
from protocols.ads.playlist import zone  # noqa: E402
from protocols.schemas import Alarm, FleetEntry  # noqa: E402

CAIRNS = REPO / "data" / "gtfs" / "cairns_gtfs.zip"
TICK_S = 10.0  # a telemetry record every 10 s
STOP_EVERY_S = 90.0
TRIP_S = 45 * 60.0
LAYOVER_S = 5 * 60.0
PLAY_EVERY_S = 30.0
PLAY_S = 15.0
STATS_EVERY_S = 900.0
ITEMS = [(f"camp{c}", f"camp{c}-item{i}") for c in range(4) for i in range(3)]
DAYS = (1, 7, 31)  # the dashboard's choices (central/dashboard/screens/reports.py)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bus_name(i: int) -> str:
    return f"bus-{i:03d}"


class Fleet:
    """What the generator needs of the timetable: per route, a trip and its stops."""

    def __init__(self, store: CentralStore) -> None:
        self.routes: list[tuple[str, str, list[str]]] = []  # (route, trip, stop ids)
        for route in query_db.route_rows(store):
            trips = query_db.trip_rows(store, route["route_id"], 1)
            if trips:
                stops = [s for s, _ in gtfs_db.trip_calls(store, trips[0]["trip_id"])]
                if len(stops) >= 2:
                    self.routes.append((route["route_id"], trips[0]["trip_id"], stops))
        if not self.routes:
            raise SystemExit("the imported feed has no route with a trip")


def bus_day(
    fleet: Fleet, b: int, day_start: float, service: tuple[int, int], seq: int, rng: random.Random
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[float, str]], int]:
    """One bus's day: (telemetry rows, event rows, driver message commands (sent, id), next
    seq). Sequence numbers are shared by telemetry and events, in time order, as on a bus."""
    bus = bus_name(b)
    route, trip, stops = fleet.routes[b % len(fleet.routes)]
    start, end = day_start + service[0] * 3600.0, day_start + service[1] * 3600.0
    ev: list[tuple[float, str, int, str]] = []  # (t, kind, severity, data)
    t0, n_trip = start, 0
    while t0 + STOP_EVERY_S < end:  # the last trip of the day is cut at the end of service
        delay = rng.gauss(60.0, 90.0)
        j = f'"trip":"{trip}-{n_trip}","route":"{route}"'
        ev.append((t0 + delay, "trip_started", 0, f'{{{j},"delay_s":{round(delay)}}}'))
        n_stops = min(len(stops), int(TRIP_S // STOP_EVERY_S))
        for k in range(n_stops):
            delay += rng.gauss(2.0, 15.0)
            at = t0 + k * STOP_EVERY_S + delay
            if at + 30 >= end:
                break
            s = f'{j},"index":{k},"stop":"{stops[k]}"'
            if rng.random() < 0.7:
                ev.append((at, "arrived", 0, f'{{{s},"delay_s":{round(delay)}}}'))
                ev.append((at + 3, "doors_opened", 0, "{}"))
                ev.append((at + 3, "door_opened", 0, '{"door":1}'))
                ev.append((at + 4, "door_opened", 0, '{"door":2}'))
                ev.append((at + 25, "door_closed", 0, '{"door":1}'))
                ev.append((at + 25, "door_closed", 0, '{"door":2}'))
                ev.append((at + 26, "doors_closed", 0, "{}"))
                ev.append((at + 30, "departed", 0, f'{{{s},"delay_s":{round(delay + 30)}}}'))
            else:
                ev.append((at, "passed", 0, f'{{{s},"delay_s":{round(delay)}}}'))
        at = t0 + n_stops * STOP_EVERY_S + delay
        if at < end:
            ev.append((at, "trip_finished", 0, f'{{{j},"delay_s":{round(delay)}}}'))
        t0, n_trip = t0 + TRIP_S + LAYOVER_S, n_trip + 1
    play = start
    while play + PLAY_S <= end:
        camp, item = ITEMS[rng.randrange(len(ITEMS))]
        lat, lon = position(play)
        ev.append((play, "play", 0, (
            f'{{"item":"{item}","media":"{item}-sha","schedule":"{camp}-s","playlist":"{camp}",'
            f'"revision":1,"start":{play:.3f},"end":{play + PLAY_S:.3f},"bus":"{bus}",'
            f'"route":"{route}","lat":{lat:.5f},"lon":{lon:.5f}}}'
        )))  # fmt: skip
        play += PLAY_EVERY_S
    t = start + STATS_EVERY_S
    while t <= end:
        n = rng.randrange(30)
        stats = f'{{"clients":{n},"clients_max":{n + 3},"accepted":{n},"page_views":{4 * n}}}'
        ev.append((t, "portal_stats", 0, stats))
        t += STATS_EVERY_S
    for i in range(4):
        cat = ("cleanliness", "punctuality", "driver", "other")[i]
        ev.append((rng.uniform(start, end), "passenger_feedback", 0, (
            f'{{"category":"{cat}","text":"feedback {i} on {bus}"}}'
        )))  # fmt: skip
    lost = rng.uniform(start, end - 120)
    lat, lon = position(lost)
    ev.append((lost, "gps_lost", 2, f'{{"lat":{lat:.5f},"lon":{lon:.5f}}}'))
    ev.append((lost + 60, "gps_regained", 0, "{}"))
    said = rng.uniform(start, end)
    ev.append((said, "driver_message", 1, (
        f'{{"code":"delay","text":"Running late","lat":{lat:.5f},"lon":{lon:.5f}}}'
    )))  # fmt: skip
    sent: list[tuple[float, str]] = []
    for i in range(2):
        at = rng.uniform(start, end - 600)
        msg_id = f"{bus}-{int(day_start)}-{i}"
        sent.append((at, msg_id))
        ev.append((at + rng.uniform(10, 300), "driver_ack", 0, f'{{"id":"{msg_id}"}}'))
    ev.sort()
    tel: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    e, n_ev = 0, len(ev)
    tick = start
    odo = b * 1e6 + (day_start / 86400.0) * 3e5
    while tick < end:
        while e < n_ev and ev[e][0] < tick:
            at, kind, sev, data = ev[e]
            events.append((bus, seq, at, kind, sev, data, 0, at + 1.0))
            seq, e = seq + 1, e + 1
        lat, lon = position(tick + b * 60)
        speed = abs(math.sin(tick / 60.0)) * 12.0
        odo += speed * TICK_S
        tel.append((
            bus, seq, tick, lat, lon, speed, (tick / 10.0) % 360, 3, 0.9, 9, 0,
            speed * 3.6, 800 + speed * 90, int(speed < 0.5), 85.0, 60.0, odo, 0, tick + 1.0,
        ))  # fmt: skip
        seq, tick = seq + 1, tick + TICK_S
    for at, kind, sev, data in ev[e:]:
        events.append((bus, seq, at, kind, sev, data, 0, at + 1.0))
        seq += 1
    return tel, events, sent, seq


def position(t: float) -> tuple[float, float]:
    """Somewhere on a loop around Cairns, moving with time."""
    phase = t / 1800.0
    return -16.92 + 0.04 * math.sin(phase), 145.77 + 0.04 * math.cos(phase)


def fill(
    store: CentralStore, buses: int, days: int, service: tuple[int, int], tz: str, seed: int
) -> dict[str, float]:
    """The month (see the module docstring); returns the fill's figures."""
    fleet = Fleet(store)
    rng = random.Random(seed)
    today = dt.datetime.now(zone(tz)).date()
    first = today - dt.timedelta(days=days)  # whole days, the last one yesterday
    seqs = [0] * buses
    figures = {"telemetry_rows": 0.0, "event_rows": 0.0, "telemetry_s": 0.0, "events_s": 0.0}
    figures["plays_copy_s"] = 0.0
    began = time.perf_counter()
    for d in range(days):
        day = first + dt.timedelta(days=d)
        day_start, _ = day_bounds(day, tz)
        with store.transaction():
            for b in range(buses):
                tel, events, sent, seqs[b] = bus_day(fleet, b, day_start, service, seqs[b], rng)
                t = time.perf_counter()
                store.add_records(tel)
                figures["telemetry_s"] += time.perf_counter() - t
                t = time.perf_counter()
                store.add_events(events)
                figures["events_s"] += time.perf_counter() - t
                figures["telemetry_rows"] += len(tel)
                figures["event_rows"] += len(events)
                add_commands_and_alarm(store, bus_name(b), sent, rng)
        t = time.perf_counter()
        refresh_plays(store)
        figures["plays_copy_s"] += time.perf_counter() - t
        log(
            f"day {d + 1}/{days} ({day}): {int(figures['telemetry_rows']):,} telemetry rows, "
            f"{int(figures['event_rows']):,} events, {time.perf_counter() - began:.0f} s"
        )
    figures["fill_s"] = time.perf_counter() - began
    figures["telemetry_rows_per_s"] = figures["telemetry_rows"] / max(figures["telemetry_s"], 1e-9)
    figures["event_rows_per_s"] = figures["event_rows"] / max(figures["events_s"], 1e-9)
    return {k: round(v, 3) for k, v in figures.items()}


def add_commands_and_alarm(
    store: CentralStore, bus: str, sent: list[tuple[float, str]], rng: random.Random
) -> None:
    """The day's driver messages (sent, answered "ok") and one closed alarm."""
    for at, msg_id in sent:
        args = json.dumps({"text": f"Please call dispatch ({msg_id})"})
        store.add_command(msg_id, bus, COMMAND, args, at, at + 1800.0)
        store.answer_command(bus, msg_id, "ok", None, at + rng.uniform(1, 20))
    at = sent[0][0]
    alarm = Alarm(
        id=f"{bus}-{int(at)}-off", bus=bus, kind="off_route", severity=3, state="closed",
        raised_t=at, t=at + 600,
    )  # fmt: skip
    alarms_db.add_alarm(store, alarm, json.dumps({"id": alarm.id, "bus": bus}))


# -- the reports ------------------------------------------------------------------------------
Report = Callable[[], int]  # runs the report, returns how many rows it answered


def _answer_rows(answer: queries.Answer) -> int:
    return sum(len(rows) for rows in answer[1].values())


def reports(store: CentralStore, buses: int, now: float, tz: str) -> dict[str, Report]:
    """Every report and read the dashboard and the CLI offer, with representative arguments."""
    bus = bus_name(0)
    local_today = dt.datetime.fromtimestamp(now, zone(tz)).date()
    month = (local_today - dt.timedelta(days=29), local_today)
    route = query_db.route_rows(store)[0]["route_id"]
    fleet = fleet_entries(store, buses, now)
    out: dict[str, Report] = {
        "bus_detail": lambda: _answer_rows(queries.bus_detail(store, bus, now)),
    }
    for days in DAYS:
        for what in ("punctuality", "plays", "feedback"):
            out[f"{what}_{days}d"] = lambda w=what, d=days: _answer_rows(  # type: ignore[misc]
                queries.report(store, w, {"days": d}, now)
            )
    out["plays_cli_month"] = lambda: len(plays_report(store, *month, tz))
    out["plays_cli_month_item"] = lambda: len(plays_report(store, *month, tz, item=ITEMS[0][1]))
    out["driver_log_1d"] = lambda: len(driver_log(store, since=now - 86400.0))
    out["driver_log_month"] = lambda: len(driver_log(store, since=now - 30 * 86400.0))
    out["driver_log_bus_month"] = lambda: len(driver_log(store, bus=bus, since=now - 30 * 86400))
    out["commands_all"] = lambda: len(store.commands())
    out["commands_bus"] = lambda: len(store.commands(bus))
    out["gtfs_rt_vehicle_positions"] = lambda: len(
        Realtime(store, fleet=lambda: fleet, cache_s=0, clock=lambda: now)
        .feed("vehicle-positions").entity
    )  # fmt: skip
    out["gtfs_rt_trip_updates"] = lambda: len(
        Realtime(store, fleet=lambda: fleet, cache_s=0, clock=lambda: now)
        .feed("trip-updates").entity
    )  # fmt: skip
    for what in ("routes", "trips", "blocks", "stops", "shapes", "messages"):
        out[f"list_{what}"] = lambda w=what: _answer_rows(  # type: ignore[misc]
            queries.listing(store, w, {"route": route}, str(store.path) + ".media")
        )
    return out


def fleet_entries(store: CentralStore, buses: int, now: float) -> list[FleetEntry]:
    """What the service's fleet state would hold: each bus online at its last position,
    on the trip of its last journey event."""
    out = []
    for b in range(buses):
        v = query_db.latest_vehicle(store, bus_name(b)) or {}
        trip = None
        row = query_db.latest_event_of(store, bus_name(b), -1, ("departed", "arrived", "passed"))
        if row is not None:
            trip = json.loads(row[2]).get("trip")
        out.append(
            FleetEntry(
                bus=bus_name(b), online=True, last_seen=now, t=v.get("t"), lat=v.get("lat"),
                lon=v.get("lon"), speed=v.get("speed"), trip_id=trip,
            )
        )  # fmt: skip
    return out


def timed(run: Report, runs: int) -> tuple[float, int]:
    """(median seconds, rows of the last run)."""
    times, rows = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - t)
    return statistics.median(times), rows


def measure(store: CentralStore, buses: int, runs: int, tz: str) -> dict[str, Any]:
    newest = query_db.latest_vehicle(store, bus_name(0))
    if newest is None:
        raise SystemExit(f"{store.path}: no telemetry of {bus_name(0)}: not a filled database")
    now = float(newest["t"]) + 1.0  # the last service day's end: its trips still running
    baseline: dict[str, float] = {}
    t = time.perf_counter()
    telemetry_rows = store.count()
    baseline["count_telemetry_s"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    departures = query_db.event_count(store.path, ["departed"]) or 0
    baseline["count_departures_s"] = round(time.perf_counter() - t, 4)
    log(f"baseline full COUNT(*) of telemetry ({telemetry_rows:,} rows): "
        f"{baseline['count_telemetry_s']:.3f} s; count of departures ({departures:,}): "
        f"{baseline['count_departures_s']:.3f} s")  # fmt: skip
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    not_ported: dict[str, str] = {}
    for name, run in reports(store, buses, now, tz).items():
        try:
            seconds[name], rows[name] = timed(run, runs)
        except NotPorted as e:  # a part of central not on PostgreSQL yet (backend.py)
            not_ported[name] = str(e)
            log(f"{name:28s} NOT PORTED: {e}")
            continue
        flag = "" if seconds[name] < 1.0 else "  OVER 1 s"
        log(f"{name:28s} {seconds[name]:8.4f} s  {rows[name]:6d} rows{flag}")
        seconds[name] = round(seconds[name], 4)
    out = {
        "reports": seconds, "rows": rows, "baseline": baseline,
        "telemetry_rows": telemetry_rows, "departures": departures,
    }  # fmt: skip
    if not_ported:
        out["not_ported"] = not_ported
    return out


@contextlib.contextmanager
def postgres_database(url: str | None) -> Iterator[str]:
    """`url`, or an empty database on a throwaway cluster (tests/postgres_helpers.py: fsync
    and synchronous_commit on, locale C), stopped and deleted after."""
    if url is not None:
        yield url
        return
    from tests.postgres_helpers import PostgresServer  # the tests' cluster, not a copy of it

    with PostgresServer() as server:
        log(f"PostgreSQL cluster started in {server.dir}")
        yield server.create_database()


def open_database(db: str) -> CentralStore:
    """The database by path, sqlite:///path or postgresql:// URL."""
    return open_store(db.removeprefix("sqlite:///"))


def store_bytes(store: CentralStore) -> int:
    if isinstance(store, PgCentralStore):
        return database_bytes(store)
    return Path(store.path).stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--buses", type=int, default=100)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--service", default="5-24", help="service hours, local: FIRST-LAST (5-24)")
    p.add_argument("--db", help="the SQLite file to fill (default: a temporary file)")
    p.add_argument(
        "--backend",
        choices=("sqlite", "postgresql", "both"),
        default="sqlite",
        help="where the reports are timed (PostgreSQL: the month copied there)",
    )
    p.add_argument("--pg-url", help="an empty PostgreSQL database to copy the month into "
                   "(default: a throwaway cluster)")  # fmt: skip
    p.add_argument("--reuse", metavar="PATH|URL", help="time the reports on this filled database")
    p.add_argument("--runs", type=int, default=3, help="runs of each report (the median)")
    p.add_argument("--seed", type=int, default=15)
    args = p.parse_args(argv)
    try:
        first_h, last_h = (int(x) for x in args.service.split("-"))
    except ValueError:
        p.error("--service is FIRST-LAST, hours: 5-24")
    if not (0 <= first_h < last_h <= 24) or args.buses < 1 or args.days < 1 or args.runs < 1:
        p.error("--service within 0-24, --buses, --days and --runs at least 1")
    if args.db is not None and "://" in args.db and not args.db.startswith("sqlite:///"):
        p.error(f"--db {args.db}: --db is the SQLite file the month is filled into; "
                "give a PostgreSQL database with --pg-url and --backend postgresql")  # fmt: skip
    figures: dict[str, Any] = {"buses": args.buses, "days": args.days}
    figures["service_hours"] = f"{first_h:02d}:00-{last_h:02d}:00"
    backends: dict[str, Any] = {}
    if args.reuse is not None and args.backend != "sqlite" and not is_postgres_url(args.reuse):
        return copy_and_measure(args, figures)
    if args.reuse is not None:
        store = open_database(args.reuse)
        name = "postgresql" if is_postgres_url(args.reuse) else "sqlite"
        try:
            backends[name] = measure(store, args.buses, args.runs, gtfs_db.timezone(store) or "UTC")
            backends[name]["db_bytes"] = store_bytes(store)
        finally:
            store.close()
        figures["backends"] = backends
        print(json.dumps(figures))
        return 0
    with tempfile.TemporaryDirectory(prefix="reports_month-") as tmp:
        path = (args.db or str(Path(tmp) / "central.sqlite")).removeprefix("sqlite:///")
        store = open_database(path)
        try:
            t = time.perf_counter()
            import_gtfs(store, CAIRNS)
            log(f"GTFS imported in {time.perf_counter() - t:.1f} s; filling {path}")
            tz = gtfs_db.timezone(store) or "UTC"
            figures["fill"] = fill(store, args.buses, args.days, (first_h, last_h), tz, args.seed)
            for i, target in enumerate(("all", f"bus:{bus_name(0)}", "all")):
                text = f"Announcement {i}"
                create_message(store, text_de=text, text_en=text, targets=[target])
            if args.backend in ("sqlite", "both"):
                log("-- SQLite")
                backends["sqlite"] = measure(store, args.buses, args.runs, tz)
                backends["sqlite"]["db_bytes"] = store_bytes(store)
            if args.backend in ("postgresql", "both"):
                backends["postgresql"] = on_postgres(store, args, figures, tz)
        finally:
            store.close()
    return print_figures(figures, backends)


def on_postgres(
    store: CentralStore, args: argparse.Namespace, figures: dict[str, Any], tz: str
) -> dict[str, Any]:
    """The filled SQLite month copied into PostgreSQL, and the reports timed there."""
    with postgres_database(args.pg_url) as url:
        pg = open_store(url)
        assert isinstance(pg, PgCentralStore)
        try:
            t = time.perf_counter()
            copied = copy_to_postgres(store, pg, log)
            figures["copy"] = {"s": round(time.perf_counter() - t, 1),
                               "rows": sum(copied.values())}  # fmt: skip
            log(f"-- PostgreSQL (copied in {figures['copy']['s']} s)")
            out = measure(pg, args.buses, args.runs, tz)
            out["db_bytes"] = store_bytes(pg)
            return out
        finally:
            pg.close()


def copy_and_measure(args: argparse.Namespace, figures: dict[str, Any]) -> int:
    """--reuse PATH with --backend postgresql or both: the filled SQLite month copied into
    PostgreSQL (no new fill), the reports timed on the backends asked for."""
    store = open_database(args.reuse)
    backends: dict[str, Any] = {}
    try:
        tz = gtfs_db.timezone(store) or "UTC"
        if args.backend == "both":
            log("-- SQLite")
            backends["sqlite"] = measure(store, args.buses, args.runs, tz)
            backends["sqlite"]["db_bytes"] = store_bytes(store)
        backends["postgresql"] = on_postgres(store, args, figures, tz)
    finally:
        store.close()
    return print_figures(figures, backends)


def print_figures(figures: dict[str, Any], backends: dict[str, Any]) -> int:
    """Both backends side by side on stderr, then the figures as the last line."""
    figures["backends"] = backends
    if len(backends) == 2:
        rows = [b["rows"] for b in backends.values()]
        both = rows[0].keys() & rows[1].keys()  # not those not ported yet
        figures["same_rows"] = all(rows[0][name] == rows[1][name] for name in both)
        log(f"{'report':28s} {'SQLite':>10s} {'PostgreSQL':>10s}")
        for name in rows[0]:
            lite, pg_s = (backends[b]["reports"].get(name, math.nan) for b in backends)
            log(f"{name:28s} {lite:10.4f} {pg_s:10.4f}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
