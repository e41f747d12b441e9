"""`busfleet gps ...`: decode NMEA logs and watch a live receiver, one JSON fix per epoch."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from protocols.nmea.decoder import Fix, NmeaDecoder

DEFAULT_BAUD = 9600
DEFAULT_GPSD_PORT = 2947


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `gps` command group."""
    group = sub.add_parser(
        "gps",
        help="GNSS tools: decode NMEA logs, watch a receiver",
        description="Decode NMEA 0183 from a log file or a live receiver into one fix per "
        "receiver epoch, printed as JSON lines (time, lat, lon, speed m/s, track, mode, sats, "
        "hdop, ...; a key is left out when the receiver gave nothing for it).",
    )
    cmds = group.add_subparsers(dest="gps_command", metavar="SUBCOMMAND", required=True)

    dec = cmds.add_parser(
        "decode",
        help="decode an NMEA log to JSON lines, one per epoch",
        description="Decode an NMEA log (a raw capture, or gpsd's .log format: lines starting "
        "with # are comments) and print one JSON object per receiver epoch. Bad checksums, "
        "truncated lines, proprietary sentences (but Garmin's $PGRMZ) and binary junk are "
        "skipped and counted.",
    )
    dec.add_argument("file", metavar="FILE", help="NMEA log file, or - for standard input")
    dec.add_argument(
        "--stats", action="store_true", help="print the decoder's counters to stderr at the end"
    )
    dec.set_defaults(func=run_decode)

    watch = cmds.add_parser(
        "watch",
        help="print fixes from a live receiver",
        description="Read a live receiver and print one JSON fix per epoch until Ctrl-C. "
        "SOURCE is serial:///dev/ttyUSB0?baud=9600 (NMEA on a serial port) or "
        "gpsd://host:port (TPV reports from a running gpsd).",
    )
    watch.add_argument(
        "--source",
        required=True,
        metavar="URL",
        help="serial:///dev/ttyX?baud=N or gpsd://host:port",
    )
    watch.add_argument(
        "--count", type=int, default=0, metavar="N", help="stop after N fixes (default: run on)"
    )
    watch.set_defaults(func=run_watch)


def _print_fix(fix: Fix) -> None:
    print(json.dumps(fix.to_json_dict()), flush=True)


def _drain(decoder: NmeaDecoder) -> int:
    printed = 0
    while (fix := decoder.next_fix()) is not None:
        _print_fix(fix)
        printed += 1
    return printed


def _reader_gone() -> int:
    """stdout's reader (head, less) went away: stop quietly, like other Unix filters."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def run_decode(args: argparse.Namespace) -> int:
    try:
        return _decode(args)
    except BrokenPipeError:
        return _reader_gone()


def _decode(args: argparse.Namespace) -> int:
    from protocols.nmea.decoder import NmeaDecoder

    decoder = NmeaDecoder()
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        print(f"busfleet gps decode: {exc}", file=sys.stderr)
        return 2
    try:
        for line in stream:
            if line.startswith(b"#"):
                continue
            decoder.receive_data(line)
            _drain(decoder)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    # flush() closes the last epoch and hands back the oldest fix not yet taken.
    last = decoder.flush()
    if last is not None:
        _print_fix(last)
    _drain(decoder)
    if args.stats:
        stats = decoder.stats
        print(
            json.dumps(
                {
                    "sentences_ok": stats.sentences_ok,
                    "ignored": stats.ignored,
                    "rejected": stats.rejected,
                    "fixes": stats.fixes,
                    "rejected_by_reason": dict(stats.rejected_by_reason),
                    "ignored_by_type": dict(stats.ignored_by_type),
                }
            ),
            file=sys.stderr,
        )
    return 0


def parse_source(url: str) -> tuple[str, str, int]:
    """`serial:///dev/ttyX?baud=N` -> ('serial', '/dev/ttyX', N); `gpsd://h:p` -> ('gpsd', h, p).

    Raises ValueError with a message fit for the user.
    """
    parts = urlsplit(url)
    if parts.scheme == "serial":
        device = parts.path
        if not device:
            raise ValueError(f"no device in {url!r} (expected serial:///dev/ttyX?baud=9600)")
        bauds = parse_qs(parts.query).get("baud", [str(DEFAULT_BAUD)])
        try:
            baud = int(bauds[-1])
        except ValueError:
            raise ValueError(f"bad baud rate in {url!r}") from None
        return "serial", device, baud
    if parts.scheme == "gpsd":
        try:
            port = parts.port or DEFAULT_GPSD_PORT
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        return "gpsd", parts.hostname or "localhost", port
    raise ValueError(f"unknown source {url!r}: use serial:///dev/ttyX?baud=N or gpsd://host:port")


def run_watch(args: argparse.Namespace) -> int:
    try:
        kind, where, number = parse_source(args.source)
    except ValueError as exc:
        print(f"busfleet gps watch: {exc}", file=sys.stderr)
        return 2
    try:
        if kind == "serial":
            return _watch_serial(where, number, args.count)
        return _watch_gpsd(where, number, args.count)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return _reader_gone()


def _watch_serial(device: str, baud: int, count: int) -> int:
    import serial

    from protocols.nmea.decoder import NmeaDecoder

    decoder = NmeaDecoder()
    printed = 0
    try:
        port = serial.Serial(device, baud, timeout=1.0)
    except (serial.SerialException, OSError) as exc:
        print(f"busfleet gps watch: cannot open {device}: {exc}", file=sys.stderr)
        return 1
    with port:
        while not count or printed < count:
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                print(f"busfleet gps watch: {device}: {exc}", file=sys.stderr)
                return 1
            decoder.receive_data(data)
            while (fix := decoder.next_fix()) is not None and (not count or printed < count):
                _print_fix(fix)
                printed += 1
    return 0


def _watch_gpsd(host: str, port: int, count: int) -> int:
    import asyncio

    from onboard.gps.gpsd import GpsdError, watch_gpsd

    async def run() -> None:
        printed = 0
        async for fix in watch_gpsd(host, port):
            _print_fix(fix)
            printed += 1
            if count and printed >= count:
                return

    try:
        asyncio.run(run())
    except (GpsdError, OSError) as exc:
        print(f"busfleet gps watch: gpsd at {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
