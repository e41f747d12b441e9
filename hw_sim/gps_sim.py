"""A simulated GPS receiver on a bus: NMEA sentences from a `Drive`, on a pty or stdout.

`GpsSimulator` is sans-IO (time is an argument). `run_gps_pty` is the edge that writes it in
real time to a pseudo-terminal that the agent (or gpsd) opens like a serial port, and
`main_sim_gps` is `busfleet sim gps`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import IO

from hw_sim.drive import Drive
from hw_sim.pty import PtyWriter, WriteStats, open_pty
from hw_sim.truth import VehicleTruth
from protocols.geo import offset_m
from protocols.nmea.encode import encode_epoch

__all__ = [
    "DEFAULT_GTFS",
    "GpsSimulator",
    "add_gps_sim_arguments",
    "main_sim_gps",
    "open_pty",
    "run_gps",
    "run_gps_pty",
]

DEFAULT_GTFS = Path(__file__).resolve().parent.parent / "data" / "gtfs" / "cairns_gtfs.zip"
_NOISE_TAU_S = 60.0  # correlation time of the position error (multipath, atmosphere)


class GpsSimulator:
    """The sentences a receiver on the bus would emit, from the drive's true state.

    The position error is a first-order Gauss-Markov process per axis (a random walk pulled
    back to zero) with a stationary spread of `noise_m`: it wanders over tens of seconds
    instead of jumping from one epoch to the next. Now and then a satellite is gained or
    lost, which moves HDOP.
    """

    def __init__(
        self,
        drive: Drive,
        *,
        rate_hz: float = 1.0,
        seed: int,
        noise_m: float = 2.0,
        talker: str = "GP",
        alt_m: float = 8.0,
        geoid_sep_m: float = 0.0,
    ) -> None:
        if not 0 < rate_hz <= 50:
            raise ValueError(f"rate_hz must be in (0, 50]: {rate_hz}")
        self.drive = drive
        self.rate_hz = rate_hz
        self.noise_m = noise_m
        self.talker = talker
        self.alt_m = alt_m
        self.geoid_sep_m = geoid_sep_m
        self._rng = random.Random(seed)
        self._north = self._rng.gauss(0.0, noise_m)
        self._east = self._rng.gauss(0.0, noise_m)
        self.sats = self._rng.randint(7, 11)
        self._last_t: float | None = None
        self._track = 0.0

    @property
    def hdop(self) -> float:
        """Horizontal dilution of precision for the current satellite count."""
        return round(0.5 + 4.0 / max(self.sats, 1), 2)

    def epoch(self, t: float) -> tuple[VehicleTruth, list[bytes]]:
        """Advance to `t` (unix seconds, UTC): the noise-free truth and the sentences."""
        truth = self.drive.step(t)
        rng = self._rng
        dt = 1.0 / self.rate_hz if self._last_t is None else max(0.0, t - self._last_t)
        keep = math.exp(-dt / _NOISE_TAU_S)
        spread = self.noise_m * math.sqrt(1.0 - keep * keep)
        self._north = self._north * keep + rng.gauss(0.0, spread)
        self._east = self._east * keep + rng.gauss(0.0, spread)
        if rng.random() < 0.03 * dt:  # a satellite rises or sets every half minute or so
            self.sats = min(12, max(5, self.sats + rng.choice((-1, 1))))
        lat, lon = offset_m(truth.lat, truth.lon, self._north, self._east)
        if self._last_t is None:
            self._track = truth.heading_deg
        if truth.speed_mps > 0.3:
            self._track = (truth.heading_deg + rng.gauss(0.0, 1.0)) % 360.0
            speed = max(0.0, truth.speed_mps + rng.gauss(0.0, 0.05 + 0.01 * truth.speed_mps))
        else:  # standing still: a receiver reports a little jitter and keeps its last track
            speed = abs(rng.gauss(0.0, 0.03))
        # Above 1 Hz receivers send the sky (GSA, GSV) once a second, at the whole second.
        include_sky = self._last_t is None or math.floor(t) != math.floor(self._last_t)
        self._last_t = t
        sentences = encode_epoch(
            t,
            lat,
            lon,
            speed,
            self._track,
            self.alt_m + rng.gauss(0.0, 0.3),
            self.sats,
            self.hdop,
            self.talker,
            include_sky=include_sky,
            geoid_sep_m=self.geoid_sep_m,
        )
        return truth, sentences


class _TruthLog:
    """Appends each truth as one JSON line; flushed per line so a crash loses at most one."""

    def __init__(self, path: Path | None) -> None:
        self._file: IO[str] | None = path.open("a", encoding="utf-8") if path else None

    def write(self, truth: VehicleTruth) -> None:
        if self._file is None:
            return
        record = {
            "t": truth.t,
            "lat": truth.lat,
            "lon": truth.lon,
            "speed_mps": truth.speed_mps,
            "heading_deg": truth.heading_deg,
            "doors_open": truth.doors_open,
            "stop_id": truth.stop_id,
        }
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def run_gps(
    sim: GpsSimulator,
    write: Callable[[list[bytes]], object],
    *,
    rate_hz: float,
    truth_log: Path | None = None,
    on_truth: Callable[[VehicleTruth], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Emit one epoch every 1/rate_hz seconds of wall clock until the drive is finished.

    Epochs fall on whole multiples of the period (…00.0, …00.2 at 5 Hz) as on a real
    receiver. After a stall (suspended machine) it skips ahead rather than bursting.
    """
    if not 0 < rate_hz <= 50:
        raise ValueError(f"rate_hz must be in (0, 50]: {rate_hz}")
    period = 1.0 / rate_hz
    log = _TruthLog(truth_log)
    try:
        # Count ticks in integers: adding 0.2 s repeatedly would drift off the grid.
        k = math.ceil(clock() * rate_hz)
        while True:
            tick = k / rate_hz
            delay = tick - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            truth, sentences = sim.epoch(tick)
            write(sentences)
            log.write(truth)
            if on_truth is not None:
                on_truth(truth)
            if sim.drive.finished:
                return
            k += 1
            if k / rate_hz < clock() - period:
                k = math.ceil(clock() * rate_hz)
    finally:
        log.close()


async def run_gps_pty(
    sim: GpsSimulator,
    master_fd: int,
    *,
    rate_hz: float,
    truth_log: Path | None,
    on_truth: Callable[[VehicleTruth], None] | None = None,
    stats: WriteStats | None = None,
) -> None:
    """Write the simulator's sentences to a pty master in real time (see `run_gps`).

    Never blocks on the pty: when nobody reads the slave, sentences are dropped and counted
    in `stats`. Readers may close and reopen the slave at any time.
    """
    writer = PtyWriter(master_fd, stats)

    def write(sentences: list[bytes]) -> None:
        writer.drain_input()
        writer.write_sentences(sentences)

    await run_gps(sim, write, rate_hz=rate_hz, truth_log=truth_log, on_truth=on_truth)


def _rate(value: str) -> float:
    rate = float(value)
    if not 1.0 <= rate <= 10.0:
        raise argparse.ArgumentTypeError(f"rate must be 1..10 Hz, not {value}")
    return rate


def add_gps_sim_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `busfleet sim gps`."""
    parser.add_argument(
        "--gtfs",
        type=Path,
        default=DEFAULT_GTFS,
        help="GTFS feed, zip or folder (default: the bundled Cairns feed)",
    )
    parser.add_argument(
        "--trip", metavar="TRIP_ID", help="trip to drive (default: the first demo trip of the feed)"
    )
    parser.add_argument(
        "--rate", type=_rate, default=1.0, metavar="HZ", help="epochs per second, 1..10 (default 1)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--noise", type=float, default=2.0, metavar="M", help="position noise in metres (default 2)"
    )
    parser.add_argument(
        "--talker",
        default="GP",
        choices=("GP", "GN", "GL", "GA", "GB", "BD"),
        help="NMEA talker id (default GP)",
    )
    parser.add_argument(
        "--truth-log",
        type=Path,
        metavar="FILE",
        help="append the true state per epoch as JSON lines to FILE",
    )
    parser.add_argument(
        "--stdout", action="store_true", help="write NMEA to stdout instead of a pseudo-terminal"
    )


def _build_sim(args: argparse.Namespace) -> GpsSimulator:
    from protocols.gtfs.feed import demo_trips, read_feed

    feed = read_feed(args.gtfs)
    trip_id = args.trip
    if trip_id is None:
        found = demo_trips(feed, 1)
        if not found:
            raise LookupError(f"{args.gtfs} has no trip long enough to drive")
        trip_id = found[0]
    if trip_id not in feed.trips:
        raise LookupError(f"no trip {trip_id!r} in {args.gtfs}")
    line, stops = feed.trip_path(trip_id)
    route = feed.routes[feed.trips[trip_id].route_id]
    print(
        f"trip {trip_id}, route {route.short_name} {route.long_name}, "
        f"{len(stops)} stops, {line.length_m / 1000:.1f} km",
        file=sys.stderr,
    )
    drive = Drive(line, [(s.stop_id, d) for s, d in stops], start_t=time.time(), seed=args.seed)
    return GpsSimulator(
        drive, rate_hz=args.rate, seed=args.seed, noise_m=args.noise, talker=args.talker
    )


async def _until_terminated(job: Coroutine[object, object, None]) -> None:
    """Run `job`; SIGTERM (systemd, a test fixture) ends it as cleanly as Ctrl-C does."""
    task = asyncio.ensure_future(job)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main_sim_gps(args: argparse.Namespace) -> int:
    """`busfleet sim gps`: drive a trip and emit its NMEA on a pty (path printed) or stdout."""
    from protocols.errors import GtfsError

    try:
        sim = _build_sim(args)
    except (GtfsError, LookupError) as exc:
        print(f"busfleet sim gps: {exc}", file=sys.stderr)
        return 2
    try:
        if args.stdout:
            out = sys.stdout.buffer

            def write(sentences: Sequence[bytes]) -> None:
                out.write(b"".join(sentences))
                out.flush()

            asyncio.run(
                _until_terminated(run_gps(sim, write, rate_hz=args.rate, truth_log=args.truth_log))
            )
        else:
            master, path = open_pty()
            print(path, flush=True)
            try:
                asyncio.run(
                    _until_terminated(
                        run_gps_pty(sim, master, rate_hz=args.rate, truth_log=args.truth_log)
                    )
                )
            finally:
                os.close(master)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `... --stdout | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0
