"""The agent's gpsd source against the real daemon: gpsd reading the simulator's NMEA from a
pty, a gpsd restart, and gpsfake replaying a real capture.

Each test starts its own gpsd on a free loopback port with its own TMPDIR and control socket,
and stops it after. Skipped only where gpsd / gpsfake are not installed (CI installs them).

gpsfake runs here with its log looping (no `-1`): a single-shot gpsfake writes the whole log
into the pty before any outside client can watch, and gpsd flushes the pty when it opens it,
so an outside client would see nothing. Looping, every epoch comes round again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from busfleet.broker.launch import free_port, wait_for_port
from hw_sim.drive import Drive
from hw_sim.gps_sim import GpsSimulator, open_pty, run_gps_pty
from hw_sim.truth import VehicleTruth
from onboard.gps.gpsd import GpsdGps
from protocols.geo import Polyline, haversine_m, offset_m
from protocols.nmea.decoder import Fix, NmeaDecoder

GPSD = shutil.which("gpsd") or next(
    (p for p in ("/usr/sbin/gpsd", "/usr/local/sbin/gpsd") if Path(p).exists()), None
)
GPSFAKE = shutil.which("gpsfake")
DATA = Path(__file__).resolve().parent.parent / "data" / "nmea"
START = (-16.92, 145.77)
TRUTH_TOLERANCE_M = 15.0  # the simulator's noise is ~2 m; gpsd adds nothing of its own
# gpsd 3.22 takes any NMEA date before its build as a GPS week rollover and adds 1024 weeks;
# newer gpsd (which wrote the .chk files) learns the date from the capture's `# Date:` line.
ROLLOVER = timedelta(weeks=1024)


# Not skips: CI has everything installed, so a missing gpsd is a failure that says why.
@pytest.fixture(autouse=True)
def _gpsd_is_installed() -> None:
    assert GPSD and GPSFAKE, "gpsd and gpsfake (gpsd-clients) are not installed (./run setup)"


@contextlib.contextmanager
def gpsd_on(device: str, port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real gpsd in the foreground reading `device`, listening on loopback `port`."""
    assert GPSD is not None
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "gpsd.log").open("ab") as log:
        proc = subprocess.Popen(
            [GPSD, "-N", "-n", "-S", str(port), "-F", str(workdir / "gpsd.sock"), device],
            env={**os.environ, "TMPDIR": str(workdir)},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def straight_drive(start_t: float) -> Drive:
    """A bus pulling away from 100 m along a straight 20 km road (so it moves)."""
    line = Polyline([START, offset_m(*START, 0.0, 20_000.0)])
    stops = [("A", 0.0), ("B", 10_000.0), ("C", 20_000.0)]
    return Drive(line, stops, start_t=start_t, seed=3, start_dist_m=100.0)


class Collected:
    """Fixes from the source, with an event per condition a test waits for."""

    def __init__(self) -> None:
        self.fixes: list[Fix] = []
        self.changed = asyncio.Event()

    def on_fix(self, fix: Fix, at: float) -> None:
        self.fixes.append(fix)
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds; callers bound the wait with asyncio.timeout."""
        while not condition():
            self.changed.clear()
            await self.changed.wait()


def timed(fixes: list[Fix], after: float = 0.0) -> list[Fix]:
    return [f for f in fixes if f.time is not None and f.time.timestamp() > after and f.mode >= 2]


async def test_gpsd_reading_the_simulators_pty_delivers_fixes_near_the_truth(
    tmp_path: Path,
) -> None:
    truths: dict[float, VehicleTruth] = {}
    sim = GpsSimulator(straight_drive(time.time()), rate_hz=2.0, seed=5)
    master, slave = open_pty()
    port = free_port()
    got = Collected()
    try:
        with gpsd_on(slave, port, tmp_path / "gpsd"):
            async with asyncio.TaskGroup() as tg:
                feeder = tg.create_task(
                    run_gps_pty(
                        sim,
                        master,
                        rate_hz=2.0,
                        truth_log=None,
                        on_truth=lambda t: truths.update({t.t: t}),
                    )
                )
                source = GpsdGps("127.0.0.1", port, got.on_fix)
                reader = tg.create_task(source.run())
                async with asyncio.timeout(30):
                    await got.until(lambda: len(timed(got.fixes)) >= 10)
                feeder.cancel()
                reader.cancel()
    finally:
        os.close(master)
    fixes = timed(got.fixes)
    compared = 0
    for fix in fixes:
        assert fix.time is not None and fix.lat is not None and fix.lon is not None
        truth = truths.get(fix.time.timestamp())
        if truth is None:
            continue
        compared += 1
        assert haversine_m(fix.lat, fix.lon, truth.lat, truth.lon) < TRUTH_TOLERANCE_M
    assert compared >= 10
    assert max(truth.speed_mps for truth in truths.values()) > 0.5, "the bus never moved"


async def test_the_gpsd_source_recovers_when_gpsd_is_killed_and_restarted(tmp_path: Path) -> None:
    sim = GpsSimulator(straight_drive(time.time()), rate_hz=2.0, seed=6)
    master, slave = open_pty()
    port = free_port()
    got = Collected()
    source = GpsdGps("127.0.0.1", port, got.on_fix, backoff_max_s=1.0)
    try:
        async with asyncio.TaskGroup() as tg:
            feeder = tg.create_task(run_gps_pty(sim, master, rate_hz=2.0, truth_log=None))
            reader = tg.create_task(source.run())
            with gpsd_on(slave, port, tmp_path / "first") as first:
                async with asyncio.timeout(30):
                    await got.until(lambda: len(timed(got.fixes)) >= 2)
                stop(first, signal.SIGKILL)  # no goodbye to its clients
            killed_at = time.time()
            with gpsd_on(slave, port, tmp_path / "second"):
                async with asyncio.timeout(30):
                    await got.until(lambda: len(timed(got.fixes, after=killed_at + 1)) >= 2)
            feeder.cancel()
            reader.cancel()
    finally:
        os.close(master)
    assert source.connects >= 2
    assert timed(got.fixes, after=killed_at + 1)


def our_fixes(path: Path) -> dict[float, Fix]:
    """Our decoder's fix per epoch time for a capture."""
    decoder = NmeaDecoder()
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.startswith(b"#"):
            decoder.receive_data(line)
    out: dict[float, Fix] = {}
    fix = decoder.flush()
    while fix is not None:
        if fix.time is not None:
            out[fix.time.timestamp()] = fix
        fix = decoder.next_fix()
    return out


@contextlib.contextmanager
def gpsfake(log: Path, port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """gpsfake looping `log` through its own gpsd on `port` (0.01 s between sentences)."""
    assert GPSFAKE is not None
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "gpsfake.log").open("ab") as out:
        proc = subprocess.Popen(
            [GPSFAKE, "-q", "-c", "0.01", "-P", str(port), str(log)],
            env={**os.environ, "TMPDIR": str(workdir)},  # its control socket goes there
            stdout=out,
            stderr=out,
            start_new_session=True,  # its gpsd in our new group: stopped with it below
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def test_gpsfake_replaying_a_real_capture_gives_the_fixes_our_decoder_finds(
    tmp_path: Path,
) -> None:
    capture = DATA / "bu353s4.log"
    ours = our_fixes(capture)
    port = free_port()
    got = Collected()
    # gpsd reports each epoch in several TPVs as its sentences arrive; compare the last one.
    # gpsd only reads the pty once we watch, so it starts mid-log, without the history that
    # decides a fix's mode: only passes after the first wrap-around of the log count.
    last: dict[float, Fix] = {}

    def seen() -> bool:
        last.clear()
        previous: float | None = None
        wrapped = False
        for fix in timed(got.fixes):
            assert fix.time is not None
            t = fix.time.timestamp()
            if t not in ours and (fix.time - ROLLOVER).timestamp() in ours:
                t = (fix.time - ROLLOVER).timestamp()
            wrapped = wrapped or (previous is not None and t < previous)
            previous = t
            if wrapped:
                last[t] = fix
        return set(ours) <= set(last)

    with gpsfake(capture, port, tmp_path / "gpsfake"):
        source = GpsdGps("127.0.0.1", port, got.on_fix, backoff_min_s=0.1, backoff_max_s=0.5)
        reader = asyncio.create_task(source.run())
        try:
            async with asyncio.timeout(60):
                await got.until(seen)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert set(last) == set(ours)
    for t, theirs in last.items():
        mine = ours[t]
        assert theirs.mode == mine.mode
        assert theirs.lat is not None and mine.lat is not None
        assert theirs.lon is not None and mine.lon is not None
        assert abs(theirs.lat - mine.lat) < 1e-6 and abs(theirs.lon - mine.lon) < 1e-6
        assert theirs.speed is not None and mine.speed is not None
        assert abs(theirs.speed - mine.speed) < 0.01
        assert theirs.track is not None and mine.track is not None
        assert abs(theirs.track - mine.track) < 0.1
        if theirs.alt_msl is not None:
            assert mine.alt_msl is not None and abs(theirs.alt_msl - mine.alt_msl) < 0.001
