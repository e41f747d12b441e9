"""GPS sources: replay of a log, a serial receiver unplugged and plugged back, gpsd reconnects,
and the factory that picks one from config. Real gpsd is in test_gpsd_integration.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hw_sim.pty import PtyWriter, open_pty
from onboard.errors import ConfigError
from onboard.gps.backends import GPS_SOURCES, make_gps_source
from onboard.gps.gpsd import GpsdGps
from onboard.gps.replay import ReplayGps
from onboard.gps.serial_port import SerialGps
from protocols.geo import offset_m
from protocols.nmea.decoder import Fix, NmeaDecoder
from protocols.nmea.encode import encode_epoch

DATA = Path(__file__).resolve().parent.parent / "data" / "nmea"
CAIRNS = (-16.9186, 145.7781)
T0 = 1_717_200_000.0  # a whole second


def decode_file(path: Path) -> list[Fix]:
    """Our decoder over a whole log, `#` lines skipped: what a replay must deliver."""
    decoder = NmeaDecoder()
    fixes: list[Fix] = []
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.startswith(b"#"):
            decoder.receive_data(line)
    fix = decoder.flush()  # closes the last epoch and hands back the oldest fix still queued
    while fix is not None:
        fixes.append(fix)
        fix = decoder.next_fix()
    return fixes


def write_log(path: Path, times: list[float]) -> Path:
    """An NMEA log with one epoch per time, driving east at 10 m/s."""
    out = [b"# a test log\n"]
    for i, t in enumerate(times):
        lat, lon = offset_m(*CAIRNS, 0.0, 10.0 * i)
        out += encode_epoch(t, lat, lon, 10.0, 90.0, 8.0, 9, 0.9)
    path.write_bytes(b"".join(out))
    return path


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


# -- replay ----------------------------------------------------------------------------------


async def test_a_replay_delivers_exactly_the_fixes_our_decoder_finds_in_the_log() -> None:
    log = DATA / "bu353s4.log"
    got: list[Fix] = []
    replay = ReplayGps(log, lambda fix, at: got.append(fix), speed=0, retime=False)
    await replay.run()
    assert got == decode_file(log)
    assert replay.passes == 1


async def test_a_replay_counts_the_lines_it_rejected(tmp_path: Path) -> None:
    lines = (DATA / "bu353s4.log").read_bytes().splitlines(keepends=True)
    # A receiver's start-up junk, a bad checksum and a cut-off line in the middle of the log.
    lines[10:10] = [b"\x00\xff\xfe junk\n", b"$GPRMC,030720.000,A*00\n", b"$GPGGA,0307\n"]
    log = tmp_path / "dirty.log"
    log.write_bytes(b"".join(lines))
    decoder = NmeaDecoder()
    for line in lines:
        if not line.startswith(b"#"):
            decoder.receive_data(line)
    replay = ReplayGps(log, lambda fix, at: None, speed=0)
    await replay.run()
    assert decoder.stats.rejected == 3
    assert replay.rejected == decoder.stats.rejected


async def test_a_replay_hands_fixes_over_at_the_logs_pace_divided_by_speed(tmp_path: Path) -> None:
    log = write_log(tmp_path / "drive.log", [T0 + i for i in range(6)])
    fake = FakeTime()
    delivered: list[float] = []
    replay = ReplayGps(
        log,
        lambda fix, at: delivered.append(at),
        speed=4.0,
        retime=False,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    await replay.run()
    assert [at - delivered[0] for at in delivered] == pytest.approx([i / 4.0 for i in range(6)])


async def test_a_long_hole_in_the_log_is_shortened_to_max_gap_s(tmp_path: Path) -> None:
    log = write_log(tmp_path / "hole.log", [T0, T0 + 1, T0 + 3601, T0 + 3602])
    fake = FakeTime()
    delivered: list[float] = []
    replay = ReplayGps(
        log,
        lambda fix, at: delivered.append(at),
        speed=1.0,
        max_gap_s=5.0,
        retime=False,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    await replay.run()
    assert [at - delivered[0] for at in delivered] == pytest.approx([0.0, 1.0, 6.0, 7.0])


async def test_a_retimed_replay_starts_now_and_keeps_the_logs_spacing() -> None:
    log = DATA / "bu353s4.log"
    got: list[Fix] = []
    before = datetime.now(UTC)
    await ReplayGps(log, lambda fix, at: got.append(fix), speed=0, retime=True).run()
    original = [f.time for f in decode_file(log) if f.time is not None]
    retimed = [f.time for f in got if f.time is not None]
    assert len(retimed) == len(original)
    assert abs(retimed[0] - before) < timedelta(seconds=5)
    shift = retimed[0] - original[0]
    assert retimed == [t + shift for t in original]


async def test_a_looping_replay_starts_over_at_the_end_of_the_log(tmp_path: Path) -> None:
    log = write_log(tmp_path / "short.log", [T0 + i for i in range(3)])
    got: list[Fix] = []
    done = asyncio.Event()

    def on_fix(fix: Fix, at: float) -> None:
        got.append(fix)
        if len(got) >= 9:
            done.set()

    replay = ReplayGps(log, on_fix, speed=0, loop=True, retime=False)
    task = asyncio.create_task(replay.run())
    async with asyncio.timeout(10):
        await done.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert replay.passes >= 2
    assert [f.time for f in got[:3]] == [f.time for f in got[3:6]]


# -- serial: unplug and plug back -------------------------------------------------------------


@contextlib.contextmanager
def pty_at(link: Path) -> Iterator[PtyWriter]:
    """A fresh pty whose slave is reachable at `link` (re-pointed if it exists)."""
    master, slave_path = open_pty()
    tmp = link.with_suffix(".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(slave_path)
    tmp.replace(link)  # atomic, like udev re-creating /dev/gps0 for a replugged receiver
    try:
        yield PtyWriter(master)
    finally:
        os.close(master)


async def feed_until(writer: PtyWriter, start_t: float, done: asyncio.Event) -> None:
    """Write an epoch every 50 ms (receiver times one second apart) until `done`."""
    i = 0
    while not done.is_set():
        lat, lon = offset_m(*CAIRNS, 0.0, 10.0 * i)
        writer.drain_input()
        writer.write_sentences(encode_epoch(start_t + i, lat, lon, 10.0, 90.0, 8.0, 9, 0.9))
        i += 1
        await asyncio.sleep(0.05)


async def test_a_serial_receiver_unplugged_and_plugged_back_delivers_fixes_again(
    tmp_path: Path,
) -> None:
    link = tmp_path / "gps0"
    got: list[Fix] = []
    first, second = asyncio.Event(), asyncio.Event()
    before_replug = T0
    after_replug = T0 + 10_000  # the second receiver's fixes are easy to tell apart

    def on_fix(fix: Fix, at: float) -> None:
        got.append(fix)
        assert fix.time is not None
        if fix.time.timestamp() >= after_replug:
            second.set()
        else:
            first.set()

    gps = SerialGps(str(link), 9600, on_fix, backoff_max_s=0.5)
    with pty_at(link) as writer:
        reader = asyncio.create_task(gps.run())
        feeder = asyncio.create_task(feed_until(writer, before_replug, first))
        async with asyncio.timeout(20):
            await first.wait()
        await feeder
    # The first pty is gone (its master closed: the receiver was unplugged).
    with pty_at(link) as writer:
        feeder = asyncio.create_task(feed_until(writer, after_replug, second))
        async with asyncio.timeout(20):
            await second.wait()
        await feeder
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    assert gps.opened >= 2
    assert any(f.time and f.time.timestamp() < after_replug for f in got)


# -- gpsd: reconnects (a stand-in server here; the real daemon in test_gpsd_integration) ------


def tpv(t: float, lat: float) -> bytes:
    when = datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
    report = {"class": "TPV", "mode": 3, "time": when, "lat": lat, "lon": 145.0, "speed": 1.5}
    return json.dumps(report).encode() + b"\n"


@contextlib.asynccontextmanager
async def fake_gpsd(port: int, lats: list[float]) -> AsyncIterator[asyncio.Server]:
    """Answers ?WATCH with a VERSION and one TPV per latitude, then hangs up."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b'{"class":"VERSION","release":"3.22"}\n')
        for i, lat in enumerate(lats):
            writer.write(tpv(T0 + i, lat))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", port)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


async def test_the_gpsd_source_reconnects_when_gpsd_goes_away_and_comes_back() -> None:
    from busfleet.broker.launch import free_port

    port = free_port()
    got: list[Fix] = []
    first, second = asyncio.Event(), asyncio.Event()

    def on_fix(fix: Fix, at: float) -> None:
        got.append(fix)
        if len(got) >= 2:
            first.set()
        if fix.lat == -2.0:
            second.set()

    source = GpsdGps("127.0.0.1", port, on_fix, backoff_min_s=0.05, backoff_max_s=0.2)
    task = asyncio.create_task(source.run())
    # Nothing listens yet: the source keeps trying.
    await asyncio.sleep(0.3)
    async with fake_gpsd(port, [-1.0, -1.0]):
        async with asyncio.timeout(10):
            await first.wait()
    async with fake_gpsd(port, [-2.0]):
        async with asyncio.timeout(10):
            await second.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [f.lat for f in got[:2]] == [-1.0, -1.0]
    assert source.connects >= 2
    assert source.rejected == 0


# -- choosing a source ---------------------------------------------------------------------------


def make(source: str, replay_path: str = "") -> object:
    return make_gps_source(
        source,
        device="/dev/ttyUSB0",
        baud=9600,
        gpsd_host="127.0.0.1",
        gpsd_port=2947,
        replay_path=replay_path,
        on_fix=lambda fix, at: None,
    )


def test_each_configured_source_name_gives_its_backend() -> None:
    assert isinstance(make("serial"), SerialGps)
    assert isinstance(make("gpsd"), GpsdGps)
    assert isinstance(make("replay", str(DATA / "bu353s4.log")), ReplayGps)
    assert make("none") is None
    assert set(GPS_SOURCES) == {"serial", "gpsd", "replay", "none"}


def test_an_unknown_source_or_a_replay_without_a_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as unknown:
        make("glonass-direct")
    assert unknown.value.key == "gps.source"
    with pytest.raises(ConfigError) as empty:
        make("replay")
    assert empty.value.key == "gps.replay_path"
    with pytest.raises(ConfigError):
        make("replay", str(tmp_path / "missing.log"))
