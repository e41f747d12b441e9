"""Arrival predictions against timetable + current delay, by horizon (issue 17).

Replays simulated service days of the bundled Cairns feed (data/gtfs/cairns_gtfs.zip, its own
time zone and calendar) with the simulator's seeded traffic (hw_sim/traffic.py: rush hours,
slow junctions, dwell by stop and hour, per-trip noise), at stop granularity:

1. `--history-days` days: every trip of the chosen routes (`--routes`, both directions) is
   driven and its stop events (`arrived` / `departed` / `passed` with trip, index and stop, as
   a bus records them) are stored in a real central database (a SQLite file); central's
   learning (central/predictions/learn.py) builds the model from it.
2. The `--test-days` that follow (held out, never learned from): every `--step-s` seconds of
   each trip, from five minutes before it leaves to its end, the bus's live state (the stop
   it stands at or drives to, when it left the last one, how far along the segment it is, its
   delay as the journey tracker computes it) gives, for every stop still ahead:
   - the model's prediction: protocols/predict.py `predict` (the code central and the bus run);
   - the baseline: the timetable + the current delay (what the display showed before).
   Each pair's absolute error against the simulated arrival is put in its horizon bucket by
   how far ahead the arrival truly was: 0-5, 5-10, 10-20, 20-40 minutes.

Run: .venv/bin/python bench/predictions.py [--history-days 21] [--test-days 5]
     [--routes 3] [--step-s 60] [--seed 17]. Progress goes to stderr; a table, then, as the
last line, one JSON object {"mae_s": {"0-5": {"model": .., "baseline": ..}, ...}, ...}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from central.predictions.learn import learn  # noqa: E402  # after the path
from central.store.db import CentralStore  # noqa: E402
from hw_sim.traffic import Call, SimStop, TrafficModel, simulate_trip  # noqa: E402
from protocols.gtfs.feed import Feed, read_feed  # noqa: E402
from protocols.predict import LiveState, ModelTables, ScheduledStop, predict  # noqa: E402

FEED = REPO / "data" / "gtfs" / "cairns_gtfs.zip"
HORIZONS = (("0-5", 0, 300), ("5-10", 300, 600), ("10-20", 600, 1200), ("20-40", 1200, 2400))
FIRST_DAY = dt.date(2014, 6, 16)  # a Monday inside the Cairns feed's calendar, no holiday near


def pick_routes(feed: Feed, n: int) -> list[str]:
    """The `n` routes with the most trips (a busy network part), deterministic."""
    count = Counter(t.route_id for t in feed.trips.values())
    return [r for r, _ in sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


class Trip:
    """One trip of the timetable on one service day: scheduled calls, unix times."""

    def __init__(self, feed: Feed, trip_id: str, day: dt.date, tz: ZoneInfo) -> None:
        self.trip_id = trip_id
        midnight = dt.datetime.combine(day, dt.time(), tz).timestamp()
        _, placed = feed.trip_path(trip_id)
        calls = feed.stop_times(trip_id)
        self.sim = [
            SimStop(c.stop_id, midnight + c.arrival_s, midnight + c.departure_s, d)
            for c, (_, d) in zip(calls, placed, strict=True)
        ]
        self.stops = [
            ScheduledStop(c.stop_id, c.sequence, s.arrival_t, s.departure_t)
            for c, s in zip(calls, self.sim, strict=True)
        ]


def trips_of(feed: Feed, routes: Sequence[str], day: dt.date, tz: ZoneInfo) -> list[Trip]:
    services = feed.services
    out = []
    for tid in sorted(feed.trips):
        trip = feed.trips[tid]
        if trip.route_id not in routes or len(feed.stop_times(tid)) < 3:
            continue
        if services is not None and not services.runs(trip.service_id, day):
            continue
        out.append(Trip(feed, tid, day, tz))
    return out


def event_rows(bus: str, trip: Trip, calls: Sequence[Call], seq0: int) -> list[tuple[Any, ...]]:
    """The stop events a bus records for one run (central's EVENT_COLUMNS order)."""
    rows: list[tuple[Any, ...]] = []
    last = len(calls) - 1
    for k, c in enumerate(calls):
        data = {"trip": trip.trip_id, "index": k, "stop": c.stop_id}
        kinds: list[tuple[str, float]]
        if k == 0:
            kinds = [("departed", c.departed_t)]
        elif k == last or c.served:
            kinds = [("arrived", c.arrived_t)] + ([] if k == last else [("departed", c.departed_t)])
        else:
            kinds = [("passed", c.arrived_t)]
        for kind, t in kinds:
            rows.append((bus, seq0 + len(rows), t, kind, 0, json.dumps(data), 0, t + 1.0))
    return rows


def live_at(trip: Trip, calls: Sequence[Call], now: float) -> tuple[LiveState, float]:
    """The bus's live state at `now` and its delay as the journey tracker computes it."""
    sched = trip.stops
    if now < calls[0].departed_t:  # not started: at (or on its way to) the first stop
        return LiveState(now, 0), max(0.0, now - sched[0].departure_t)
    for k in range(1, len(calls)):
        c = calls[k]
        if now < c.arrived_t:  # driving from k-1 to k
            left = calls[k - 1].departed_t
            f = (now - left) / max(1e-9, c.arrived_t - left)
            at = sched[k - 1].departure_t + f * (sched[k].arrival_t - sched[k - 1].departure_t)
            return LiveState(now, k, since_t=left, progress=f), now - at
        if now < c.departed_t:  # standing at k
            delay = max(c.arrived_t - sched[k].arrival_t, now - sched[k].departure_t)
            return LiveState(now, k, at_stop=True, since_t=c.arrived_t), delay
    raise ValueError("the trip is over")


def bucket(horizon_s: float) -> str | None:
    for name, lo, hi in HORIZONS:
        if lo <= horizon_s < hi:
            return name
    return None


def run(
    *, history_days: int, test_days: int, routes: int, step_s: float, seed: int, db: Path
) -> dict[str, Any]:
    feed = read_feed(FEED)
    tz_name = feed.timezone or "UTC"
    tz = ZoneInfo(tz_name)
    chosen = pick_routes(feed, routes)
    traffic = TrafficModel(seed=seed, tz=tz_name)
    store = CentralStore(db)
    started = time.perf_counter()
    events = 0
    for d in range(history_days):
        day = FIRST_DAY + dt.timedelta(days=d)
        rows: list[tuple[Any, ...]] = []
        for n, trip in enumerate(trips_of(feed, chosen, day, tz)):
            calls = simulate_trip(traffic, trip.sim, trip_key=trip.trip_id, day=day)
            rows += event_rows(f"bus-{n % 40}", trip, calls, d * 1_000_000 + len(rows))
        events += store.add_events(rows)
    end_of_history = dt.datetime.combine(FIRST_DAY + dt.timedelta(days=history_days), dt.time(), tz)
    model = learn(store, end_of_history.timestamp(), tz=tz_name, days=history_days + 1)
    store.close()
    learned_s = time.perf_counter() - started
    print(
        f"history: {history_days} days, {events} stop events, routes {', '.join(chosen)};"
        f" model: {len(model.segments)} segment rows, {len(model.dwells)} dwell rows"
        f" ({learned_s:.1f} s)",
        file=sys.stderr,
    )
    tables = ModelTables(model)
    errors: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    trips_run = 0
    for d in range(history_days, history_days + test_days):
        day = FIRST_DAY + dt.timedelta(days=d)
        for trip in trips_of(feed, chosen, day, tz):
            calls = simulate_trip(traffic, trip.sim, trip_key=trip.trip_id, day=day)
            trips_run += 1
            now = trip.stops[0].departure_t - 300.0
            while now < calls[-1].arrived_t:
                live, delay = live_at(trip, calls, now)
                for j, p in enumerate(predict(trip.stops, live, tables)):
                    k = live.index + j
                    truth = calls[k].arrived_t
                    if k == live.index and live.at_stop:
                        continue  # the bus is there: nothing to predict
                    name = bucket(truth - now)
                    if name is None:
                        continue
                    base = trip.stops[k].arrival_t + delay
                    errors[name]["model"].append(abs(p.arrival_t - truth))
                    errors[name]["baseline"].append(abs(base - truth))
                now += step_s
    mae: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    for name, _, _ in HORIZONS:
        got = errors.get(name)
        if not got:
            continue
        mae[name] = {
            "model": round(sum(got["model"]) / len(got["model"]), 1),
            "baseline": round(sum(got["baseline"]) / len(got["baseline"]), 1),
        }
        counts[name] = len(got["model"])
    return {
        "mae_s": mae,
        "pairs": counts,
        "history_days": history_days,
        "test_days": test_days,
        "test_trips": trips_run,
        "routes": chosen,
        "seed": seed,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--history-days", type=int, default=21)
    ap.add_argument("--test-days", type=int, default=5)
    ap.add_argument("--routes", type=int, default=3)
    ap.add_argument("--step-s", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args(argv)
    if args.history_days < 1 or args.test_days < 1 or args.routes < 1 or args.step_s <= 0:
        ap.error("--history-days, --test-days, --routes and --step-s must be positive")
    with tempfile.TemporaryDirectory(prefix="bench-predictions-") as tmp:
        figures = run(
            history_days=args.history_days,
            test_days=args.test_days,
            routes=args.routes,
            step_s=args.step_s,
            seed=args.seed,
            db=Path(tmp) / "central.sqlite",
        )
    print(f"{'horizon':>8} {'pairs':>8} {'model MAE s':>12} {'baseline MAE s':>15} {'better':>7}")
    for name, m in figures["mae_s"].items():
        gain = 1.0 - m["model"] / m["baseline"] if m["baseline"] else 0.0
        print(
            f"{name:>8} {figures['pairs'][name]:>8} {m['model']:>12.1f}"
            f" {m['baseline']:>15.1f} {gain:>7.0%}"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
