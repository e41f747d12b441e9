"""What learning the prediction model costs on a month of a fleet, and what the event loop
feels of it (issue 17): central learns hourly from the last 14 days of stop events
(central/predictions/keeper.py), on a worker thread with its own connection.

The database: bench/reports_month.py's month (100 buses x 30 days: the Cairns feed, journey
events of the assigned route's trips, a stop every 90 s, 70 % served with `arrived` /
`departed`, 30 % `passed`, each with trip, index and stop; 17.9 M events in all), filled here
(--buses, --days) or reused (--reuse PATH|URL, SQLite file or PostgreSQL URL).

Measured, --runs times each (median), at `now` = the end of the last filled day's service:
- `read_s`: central/store/predictions.py's `stop_passages` over --learn-days (the SQL and the
  rows into Python), `build_s`: learn.py's `build_model` on them, `learn_s`: `learn()` whole;
- `loop`: an asyncio loop ticking every 10 ms while a `ModelKeeper` learns on its worker
  thread: how long the learn took there, the ticks, and the largest and 99th-percentile lag
  of a tick (what ingest would wait: Python's GIL is shared, the SQL is not);
- the passages read, the model's rows, and the process's peak resident memory after the
  keeper's learn (`loop.peak_rss_mb`) and at the end (`read_s` holds the passages as a list).

The last line printed is one JSON object.

Run: .venv/bin/python bench/predictions_learn.py [--reuse PATH|URL] [--buses 100] [--days 30]
     [--learn-days 14] [--runs 3].

Measured (2 cores shared with other work, SQLite, the full month: 17.9 M events, 1.44 M
passages in the 14 days, a model of 22,111 segment and 20,232 dwell rows): learn() 10.0 s
(the read 8.8 s: json_extract on every stop event; build_model 2.7 s). A keeper learning on
its thread took 11.9 s while the loop ticked on: largest tick lag 0.032 s, p99 0.0055 s; the
process peaked at 156 MB (the events streamed; as a list they take over 1 GB).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import reports_month  # noqa: E402

from central.gtfs_import import import_gtfs  # noqa: E402
from central.predictions.keeper import ModelKeeper  # noqa: E402
from central.predictions.learn import build_model, learn  # noqa: E402
from central.store import gtfs as gtfs_db  # noqa: E402
from central.store.db import CentralStore  # noqa: E402
from central.store.pg_store import open_store  # noqa: E402
from central.store.predictions import stop_passages  # noqa: E402
from protocols.ads.playlist import zone  # noqa: E402

TICK_S = 0.01


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def service_end(store: CentralStore) -> float:
    """The end of the last filled day's service: the latest event's time."""
    (latest,) = store.db.execute("SELECT max(t) FROM events").fetchone()
    if latest is None:
        raise SystemExit("the database holds no events")
    return float(latest)


def timed(runs: int, work: Any) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = work()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 3), out


async def loop_while_learning(store: CentralStore, now: float, days: int) -> dict[str, Any]:
    """Tick the loop every TICK_S while a keeper learns on its thread; the lags of the ticks."""
    keeper = ModelKeeper(store, days=days, clock=lambda: now)
    lags: list[float] = []
    began = time.perf_counter()
    keeper.poll()
    while keeper.learning:
        t = time.perf_counter()
        await asyncio.sleep(TICK_S)
        lags.append(time.perf_counter() - t - TICK_S)
    took = time.perf_counter() - began
    if keeper.model is None:
        raise SystemExit("the keeper learned nothing (see the log)")
    lags.sort()
    return {
        "learn_s": round(took, 3),
        "ticks": len(lags),
        "max_lag_s": round(lags[-1], 4) if lags else 0.0,
        "p99_lag_s": round(lags[int(0.99 * (len(lags) - 1))], 4) if lags else 0.0,
    }


def measure(store: CentralStore, days: int, runs: int) -> dict[str, Any]:
    tz = gtfs_db.timezone(store) or "UTC"
    now = service_end(store)
    since = now - days * 86_400.0
    log(f"learning from {dt.datetime.fromtimestamp(since, zone(tz))} to "
        f"{dt.datetime.fromtimestamp(now, zone(tz))} ({tz})")  # fmt: skip
    # First, while the process is small: the keeper's peak memory is the learn's (streamed).
    loop = asyncio.run(loop_while_learning(store, now, days))
    loop["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    log(f"loop while a keeper learns: {loop}")
    read_s, passages = timed(runs, lambda: stop_passages(store, since, now))
    log(f"read: {len(passages):,} passages in {read_s} s")
    build_s, model = timed(runs, functools.partial(build_model, passages, tz=tz, built=now))
    log(f"build: {len(model.segments):,} segment and {len(model.dwells):,} dwell rows "
        f"in {build_s} s")  # fmt: skip
    n_passages = len(passages)
    del passages
    learn_s, _ = timed(runs, lambda: learn(store, now, tz=tz, days=days))
    log(f"learn(): {learn_s} s")
    return {
        "passages": n_passages,
        "segments": len(model.segments),
        "dwells": len(model.dwells),
        "read_s": read_s,
        "build_s": build_s,
        "learn_s": learn_s,
        "loop": loop,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--reuse", metavar="PATH|URL", help="a filled month (reports_month.py's)")
    p.add_argument("--buses", type=int, default=100)
    p.add_argument("--days", type=int, default=30, help="days to fill (without --reuse)")
    p.add_argument("--learn-days", type=int, default=14)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=15)
    args = p.parse_args(argv)
    if args.buses < 1 or args.days < 1 or args.learn_days < 1 or args.runs < 1:
        p.error("--buses, --days, --learn-days and --runs at least 1")
    figures: dict[str, Any] = {"learn_days": args.learn_days}
    with tempfile.TemporaryDirectory(prefix="predictions_learn-") as tmp:
        target = args.reuse or str(Path(tmp) / "central.sqlite")
        store = open_store(target)
        try:
            if args.reuse is None:
                import_gtfs(store, reports_month.CAIRNS)
                tz = gtfs_db.timezone(store) or "UTC"
                figures["fill"] = reports_month.fill(
                    store, args.buses, args.days, (5, 24), tz, args.seed
                )
            figures["backend"] = store.backend
            (count,) = store.db.execute("SELECT count(*) FROM events").fetchone()
            figures["events"] = int(count)
            figures.update(measure(store, args.learn_days, args.runs))
        finally:
            store.close()
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
