"""The simulated GPS receiver: noise, sky, and NMEA on a real pty read with pyserial."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from hw_sim.drive import Drive, DriveParams
from hw_sim.gps_sim import GpsSimulator, open_pty, run_gps, run_gps_pty
from hw_sim.pty import PtyWriter, WriteStats
from hw_sim.truth import VehicleTruth
from protocols.geo import Polyline, haversine_m, offset_m
from protocols.nmea.encode import encode_epoch

REPO = Path(__file__).resolve().parent.parent
START = (-16.92, 145.77)


def _drive(length_m: float = 20_000.0, start_t: float | None = None) -> Drive:
    line = Polyline([START, offset_m(*START, length_m, 0.0)])
    stops = [(f"S{i}", d) for i, d in enumerate((0.0, length_m / 2, length_m))]
    return Drive(
        line,
        stops,
        start_t=time.time() if start_t is None else start_t,
        seed=1,
    )


def _fields(raw: bytes) -> tuple[str, list[str]]:
    """Address and fields of a sentence whose framing and checksum are checked here."""
    body, _, cs = raw.strip().decode("ascii").lstrip("$").rpartition("*")
    check = 0
    for b in body.encode():
        check ^= b
    assert cs == f"{check:02X}", raw
    address, *fields = body.split(",")
    return address, fields


def _position(rmc: list[str]) -> tuple[float, float]:
    lat = int(rmc[2][:2]) + float(rmc[2][2:]) / 60
    lon = int(rmc[4][:3]) + float(rmc[4][3:]) / 60
    return (-lat if rmc[3] == "S" else lat), (-lon if rmc[5] == "W" else lon)


def test_each_epoch_returns_the_noise_free_truth_and_a_nearby_noisy_fix() -> None:
    drive = _drive()
    twin = _drive(start_t=drive.t)  # same seed and start: the same true motion
    sim = GpsSimulator(drive, seed=3, noise_m=2.0)
    t0 = drive.t
    errors = []
    for k in range(600):
        truth, sentences = sim.epoch(t0 + k)
        assert truth == twin.step(t0 + k)
        rmc = next(_fields(s)[1] for s in sentences if _fields(s)[0] == "GPRMC")
        errors.append(haversine_m(truth.lat, truth.lon, *_position(rmc)))
    rms = math.sqrt(sum(e * e for e in errors) / len(errors))
    assert 0.5 < rms < 6.0  # "a few metres"
    # Correlated noise: the error moves much less from one second to the next than its size.
    jumps = [abs(b - a) for a, b in itertools.pairwise(errors)]
    assert sum(jumps) / len(jumps) < 0.5 * rms


def test_satellites_and_hdop_change_now_and_then() -> None:
    sim = GpsSimulator(_drive(), seed=5)
    t0 = sim.drive.t
    seen = set()
    for k in range(900):
        _, sentences = sim.epoch(t0 + k)
        gga = next(f for a, f in map(_fields, sentences) if a == "GPGGA")
        seen.add((int(gga[6]), float(gga[7])))
    assert len(seen) >= 2
    assert all(5 <= sats <= 12 for sats, _ in seen)
    # More satellites, better (lower) HDOP.
    ordered = sorted(seen)
    assert [h for _, h in ordered] == sorted((h for _, h in ordered), reverse=True)


def test_at_5_hz_the_sky_is_sent_once_a_second() -> None:
    sim = GpsSimulator(_drive(), rate_hz=5.0, seed=1)
    t0 = math.ceil(sim.drive.t)
    kinds: list[str] = []
    for k in range(10):
        kinds += [_fields(s)[0] for s in sim.epoch(t0 + k / 5.0)[1]]
    assert kinds.count("GPRMC") == 10
    assert kinds.count("GPGSA") == 2


def test_a_bus_standing_at_a_stop_reports_almost_no_speed() -> None:
    sim = GpsSimulator(_drive(), seed=2)
    truth, sentences = sim.epoch(sim.drive.t + 2.0)
    assert truth.doors_open
    rmc = next(f for a, f in map(_fields, sentences) if a == "GPRMC")
    assert float(rmc[6]) * 1852 / 3600 < 0.2


def test_a_pty_writer_drops_and_counts_when_nobody_reads() -> None:
    master, _ = open_pty()
    try:
        writer = PtyWriter(master)
        epoch = encode_epoch(time.time(), *START, 5.0, 90.0, 10.0, 8, 1.0)
        for _ in range(300):  # ~150 kB, far more than the kernel buffers
            writer.write_sentences(epoch)
        assert writer.stats.sentences_dropped > 0
        assert writer.stats.sentences_written > 0
        assert writer.stats.sentences_written + writer.stats.sentences_dropped <= 300 * len(epoch)
    finally:
        os.close(master)


def _read_serial(path: str, seconds: float) -> bytes:
    """Read the slave like the agent does, with pyserial, for about `seconds`."""
    port = serial.Serial(path, baudrate=9600, timeout=0.1)
    try:
        data = b""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            data += port.read(4096)
        return data
    finally:
        port.close()


def _complete_sentences(data: bytes) -> list[tuple[str, list[str]]]:
    # The first line may be the tail of a sentence written before the port was opened.
    lines = data.split(b"\r\n")[1:-1]
    return [_fields(line) for line in lines if line.startswith(b"$")]


async def test_the_simulator_streams_valid_nmea_to_a_reader_on_the_pty(tmp_path: Path) -> None:
    master, path = open_pty()
    assert path.startswith("/dev/")
    sim = GpsSimulator(_drive(), rate_hz=5.0, seed=1)
    log = tmp_path / "truth.jsonl"
    truths: list[VehicleTruth] = []
    stats = WriteStats()
    task = asyncio.create_task(
        run_gps_pty(sim, master, rate_hz=5.0, truth_log=log, on_truth=truths.append, stats=stats)
    )
    try:
        first = await asyncio.to_thread(_read_serial, path, 1.5)
        # The reader goes away and comes back: the simulator carries on regardless.
        await asyncio.sleep(0.5)
        second = await asyncio.to_thread(_read_serial, path, 1.5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        os.close(master)
    for data in (first, second):
        sentences = _complete_sentences(data)
        rmc = [f for a, f in sentences if a == "GPRMC"]
        assert len(rmc) >= 3  # 5 Hz for 1.5 s, loosely
        assert {a for a, _ in sentences} >= {"GPRMC", "GPGGA", "GPVTG"}
        assert all(f[1] == "A" for f in rmc)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) >= 10 and len(records) == len(truths)
    assert set(records[0]) == {
        "t",
        "lat",
        "lon",
        "speed_mps",
        "heading_deg",
        "doors_open",
        "stop_id",
    }
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)
    assert records[-1]["lat"] == truths[-1].lat
    assert stats.sentences_written > 0


async def test_streaming_ends_by_itself_when_the_trip_is_over() -> None:
    line = Polyline([START])
    drive = Drive(
        line, [("ONLY", 0.0)], start_t=time.time(), seed=1, params=DriveParams(dwell_s=(0.5, 0.5))
    )
    sim = GpsSimulator(drive, rate_hz=10.0, seed=1)
    written: list[bytes] = []
    async with asyncio.timeout(20):
        await run_gps(sim, written.extend, rate_hz=10.0)
    assert drive.finished
    assert any(s.startswith(b"$GPRMC") for s in written)


def _sim_gps_process(*args: str) -> subprocess.Popen[bytes]:
    code = (
        "import argparse, sys\n"
        "from hw_sim.gps_sim import add_gps_sim_arguments, main_sim_gps\n"
        "p = argparse.ArgumentParser()\n"
        "add_gps_sim_arguments(p)\n"
        "sys.exit(main_sim_gps(p.parse_args(sys.argv[1:])))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sim_gps_on_stdout_writes_nmea_until_interrupted() -> None:
    proc = _sim_gps_process("--stdout", "--rate", "5", "--seed", "2")
    try:
        lines = [proc.stdout.readline() for _ in range(8)] if proc.stdout else []
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert sum(line.startswith(b"$GPRMC") for line in lines) >= 1
    for line in lines:
        _fields(line)


def test_sim_gps_prints_the_pty_path_and_serves_nmea_there() -> None:
    proc = _sim_gps_process("--rate", "5")
    try:
        path = proc.stdout.readline().decode().strip() if proc.stdout else ""
        assert path.startswith("/dev/"), path
        data = _read_serial(path, 2.0)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert sum(a == "GPRMC" for a, _ in _complete_sentences(data)) >= 3


def test_sim_gps_refuses_an_unknown_trip() -> None:
    proc = _sim_gps_process("--stdout", "--trip", "no-such-trip")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert b"no-such-trip" in err


def test_a_rate_outside_1_to_10_hz_is_refused() -> None:
    proc = _sim_gps_process("--rate", "50")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and b"rate" in err


async def test_a_full_pty_does_not_block_the_simulator() -> None:
    # A blocking write would freeze the event loop here (and pytest-timeout would fail us).
    master, _ = open_pty()
    sim = GpsSimulator(_drive(), rate_hz=10.0, seed=1)
    stats = WriteStats()
    writer = PtyWriter(master)  # fill the pty buffer first, so the simulator meets EAGAIN
    for _ in range(400):
        writer.write_sentences(encode_epoch(time.time(), *START, 5.0, 90.0, 10.0, 8, 1.0))
    task = asyncio.create_task(run_gps_pty(sim, master, rate_hz=10.0, truth_log=None, stats=stats))
    try:
        await asyncio.sleep(1.0)
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        os.close(master)
    assert stats.sentences_dropped > 0
