"""Timetable packages: size against the GTFS zip, and a bus's download + switch time (issue 14).

For each feed (the Cairns feed in data/gtfs, and a synthetic one of --stop-times stop times
written by bench/gtfs_import.py's generator and zipped):

- the baseline, measured in the same run: `read_feed` of the GTFS zip, what a bus did before
  timetables came from central (agent.toml's `[journey] gtfs`, read at start);
- central's side: `build_package` of the feed's files (protocols/gtfs/package.py) and its
  size beside the GTFS zip's;
- the bus's side, over real HTTP from central's own server code (central/http/timetables.py,
  with Range, on a free loopback port): the download alone (`fetch_verified`: stream, size and
  sha256 check), then the whole path of onboard/timetable/runtime.py's `TimetableRuntime.step`
  for a version valid now: download, hash check, `read_package` (with the hash checked again
  from disk), staged in agent.sqlite, switched, the feed handed to a `JourneyRuntime` that was
  running the GTFS zip's feed with a trip assigned (`switch_feed`, which plans it again).

Server and bus share one event loop here (the server's sends and the bus's writes take turns):
on a bus the download is bound by its cellular link, which no loopback figure says anything
about; what this measures is the cost on the bus's CPU once the bytes arrive.

Run: .venv/bin/python bench/timetable.py [--stop-times 2000000] [--feeds cairns,synthetic]
     [--quick]. Progress goes to stderr; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402 - after the path set-up

from bench.gtfs_import import write_feed  # noqa: E402
from central.http.server import create_app, serving  # noqa: E402
from central.http.timetables import timetable_routes  # noqa: E402
from central.store.db import CentralStore  # noqa: E402
from central.timetables import package_path  # noqa: E402
from onboard.ads.cache import MediaCache  # noqa: E402
from onboard.ads.download import fetch_verified  # noqa: E402
from onboard.journey.runtime import JourneyRuntime  # noqa: E402
from onboard.store import open_store  # noqa: E402
from onboard.timetable.runtime import MIME, TimetableRuntime  # noqa: E402
from protocols.gtfs.feed import Feed, read_feed  # noqa: E402
from protocols.gtfs.package import FILES, build_package, package_sha256, read_package  # noqa: E402
from protocols.schemas import Assignment, TimetableRef  # noqa: E402

CAIRNS = REPO / "data" / "gtfs" / "cairns_gtfs.zip"
QUICK_STOP_TIMES = 20_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_zip(tmp: Path, stop_times: int) -> Path:
    """bench/gtfs_import.py's synthetic feed, zipped as a publisher would (deflate)."""
    folder = tmp / "synthetic"
    write_feed(folder, stop_times)
    zipped = tmp / "synthetic.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
    for f in folder.iterdir():
        f.unlink()
    return zipped


def zip_texts(path: Path) -> dict[str, str]:
    """The text of each GTFS file a package holds, as central's import keeps it."""
    with zipfile.ZipFile(path) as zf:
        by_base = {Path(i.filename).name: i for i in zf.infolist() if not i.is_dir()}
        return {n: zf.read(by_base[n]).decode("utf-8-sig") for n in FILES if n in by_base}


def first_trip(feed: Feed) -> str:
    """A trip with calls, to give the journey something to plan again at the switch."""
    return next(t for t in sorted(feed.trips) if feed.stop_times(t))


async def bus_side(
    tmp: Path, package: bytes, sha: str, old_feed: Feed, trip: str
) -> dict[str, float]:
    """Serve the package from central's HTTP code; time the download, then the whole switch."""
    served = tmp / "central-timetables"
    served.mkdir()
    package_path(served, sha).write_bytes(package)
    store = CentralStore(":memory:")
    app = create_app(store, routes=timetable_routes(served))
    figures: dict[str, float] = {}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)
    try:
        async with serving(app, "127.0.0.1", 0) as (host, port):
            url = f"http://{host}:{port}/timetables/{sha}.zip"
            async with aiohttp.ClientSession(timeout=timeout) as session:
                # 1. The download alone, into a cache of its own (verified on arrival).
                cache = MediaCache(tmp / "download-only", budget_bytes=len(package) * 2)
                started = time.perf_counter()
                await fetch_verified(
                    session, url, cache, sha256=sha, size=len(package), mime=MIME, label="bench"
                )
                figures["download_s"] = time.perf_counter() - started

                # 2. The bus's whole path: TimetableRuntime fetches, checks, reads, switches.
                agent_store = open_store(tmp / "agent.sqlite")
                journey = JourneyRuntime(old_feed)
                journey.assign(Assignment(trip_id=trip), [], time.time())
                switched: list[float] = []

                def on_feed(feed: Feed, ref: TimetableRef) -> None:
                    at = time.perf_counter()
                    journey.switch_feed(feed, time.time())
                    switched.append(time.perf_counter() - at)

                runtime = TimetableRuntime(
                    agent_store,
                    tmp / "bus-timetables",
                    on_feed=on_feed,
                    on_event=lambda kind, data, severity: 0,
                    on_change=lambda: None,
                    budget_bytes=len(package) * 3,
                )
                ref = TimetableRef(version=2, sha256=sha, size=len(package), url=url)
                runtime.offer(ref)
                started = time.perf_counter()
                await runtime.step(session)
                figures["download_and_switch_s"] = time.perf_counter() - started
                if runtime.running != ref or not switched or journey.feed is old_feed:
                    raise SystemExit(f"the bus did not switch: {runtime.error or 'no error said'}")
                figures["journey_switch_s"] = switched[0]
                agent_store.close()
    finally:
        store.close()
    return figures


def measure(name: str, zipped: Path, tmp: Path) -> dict[str, Any]:
    log(f"[{name}] reading the GTFS zip ({zipped.stat().st_size:,} bytes), the baseline...")
    started = time.perf_counter()
    old_feed = read_feed(zipped)
    read_s = time.perf_counter() - started
    stop_times = sum(len(old_feed.stop_times(t)) for t in old_feed.trips)

    log(f"[{name}] building the package of {stop_times:,} stop times...")
    texts = zip_texts(zipped)
    started = time.perf_counter()
    package = build_package(texts)
    build_s = time.perf_counter() - started
    del texts
    sha = package_sha256(package)

    started = time.perf_counter()
    read_package(package)
    package_read_s = time.perf_counter() - started

    log(f"[{name}] package {len(package):,} bytes; download and switch over HTTP...")
    work = tmp / f"{name}-run"
    work.mkdir()
    bus = asyncio.run(bus_side(work, package, sha, old_feed, first_trip(old_feed)))
    figures: dict[str, Any] = {
        "stop_times": stop_times,
        "trips": len(old_feed.trips),
        "gtfs_zip_bytes": zipped.stat().st_size,
        "package_bytes": len(package),
        "package_vs_zip": round(len(package) / zipped.stat().st_size, 3),
        "build_package_s": round(build_s, 3),
        "package_read_s": round(package_read_s, 3),
        "download_s": round(bus["download_s"], 3),
        "download_and_switch_s": round(bus["download_and_switch_s"], 3),
        "journey_switch_s": round(bus["journey_switch_s"], 4),
        "baseline_read_gtfs_zip_s": round(read_s, 3),
    }
    log(
        f"[{name}] package {len(package):,} B vs GTFS zip {zipped.stat().st_size:,} B "
        f"({figures['package_vs_zip']:.2f}x); built in {build_s:.2f} s; "
        f"download {bus['download_s']:.2f} s, download + switch "
        f"{bus['download_and_switch_s']:.2f} s (journey switch "
        f"{bus['journey_switch_s'] * 1000:.1f} ms) | baseline read_feed of the GTFS zip "
        f"{read_s:.2f} s"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stop-times",
        type=int,
        default=None,
        help=f"stop times of the synthetic feed (default 2,000,000; --quick: {QUICK_STOP_TIMES:,})",
    )
    parser.add_argument(
        "--feeds", default="cairns,synthetic", help="which feeds, comma-separated (default both)"
    )
    parser.add_argument("--quick", action="store_true", help="a small synthetic feed")
    parser.add_argument("--gtfs", type=Path, default=CAIRNS, help="the real feed (Cairns)")
    args = parser.parse_args()
    stop_times = args.stop_times or (QUICK_STOP_TIMES if args.quick else 2_000_000)
    feeds = [f.strip() for f in args.feeds.split(",") if f.strip()]
    unknown = set(feeds) - {"cairns", "synthetic"}
    if unknown or not feeds:
        parser.error(f"--feeds takes cairns and/or synthetic, not {sorted(unknown) or 'nothing'}")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "cairns" in feeds:
            out["cairns"] = measure("cairns", args.gtfs, tmp)
        if "synthetic" in feeds:
            log(f"[synthetic] writing a feed of ~{stop_times:,} stop times...")
            out["synthetic"] = measure("synthetic", synthetic_zip(tmp, stop_times), tmp)
    out["peak_rss_mb"] = round(rss_mb())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
