"""`busfleet gps decode|watch`: JSON fix lines from a capture, a serial port and a gpsd."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from busfleet.cli import main
from protocols.nmea.decoder import NmeaDecoder

DATA = Path(__file__).resolve().parent.parent / "data" / "nmea"
CAPTURE = DATA / "bu353s4.log"


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def library_fixes(path: Path) -> list[dict[str, object]]:
    decoder = NmeaDecoder()
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.startswith(b"#"):
            decoder.receive_data(line)
    out = []
    fix = decoder.flush()
    while fix is not None:
        out.append(fix.to_json_dict())
        fix = decoder.next_fix()
    return out


def test_decode_prints_one_json_fix_per_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gps", "decode", str(CAPTURE)]) == 0
    fixes = json_lines(capsys.readouterr().out)
    rmc_times = [
        line.split(b",")[1] for line in CAPTURE.read_bytes().splitlines() if line[3:6] == b"RMC"
    ]
    assert len(fixes) == len(rmc_times)  # this receiver sends one RMC per epoch
    assert fixes[0]["time"] == "2014-12-31T03:07:19.000Z"
    for fix in fixes:
        assert {"time", "lat", "lon", "speed", "track", "mode", "sats", "hdop"} <= set(fix)
    assert fixes == library_fixes(CAPTURE)


def test_decode_skips_comment_lines_and_reports_counters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "with-junk.log"
    body = CAPTURE.read_bytes()
    log.write_bytes(b"# a comment, $GPRMC inside it\n" + body + b"$GPGGA,cut off here\n")
    assert main(["gps", "decode", "--stats", str(log)]) == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.err.strip().splitlines()[-1])
    assert stats["rejected_by_reason"] == {"truncated": 1}
    assert stats["fixes"] == len(json_lines(captured.out))


def test_decode_of_a_missing_file_fails_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gps", "decode", str(tmp_path / "nope.log")]) == 2
    assert "nope.log" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["gps", "--help"], ["gps", "decode", "--help"], ["gps", "watch", "--help"]]
)
def test_every_gps_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("source", ["ftp://x", "serial://", "serial:///dev/x?baud=fast"])
def test_watch_with_a_bad_source_url_fails_with_exit_code_2(
    source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gps", "watch", "--source", source]) == 2
    assert "busfleet gps watch" in capsys.readouterr().err


def test_watch_reads_nmea_from_a_serial_port(capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)  # a real serial line: no echo, no line editing
    lines = [line for line in CAPTURE.read_bytes().splitlines(keepends=True) if line[:1] == b"$"]
    stop = threading.Event()

    def receiver() -> None:
        # Like a live receiver: sentences keep coming (pyserial drops what came before open).
        with contextlib.suppress(OSError):
            while not stop.is_set():
                for line in lines:
                    os.write(master, line)
                    time.sleep(0.001)

    writer = threading.Thread(target=receiver, daemon=True)
    writer.start()
    try:
        code = main(
            ["gps", "watch", "--source", f"serial://{os.ttyname(slave)}?baud=9600", "--count", "4"]
        )
    finally:
        stop.set()
        writer.join(timeout=5)
        os.close(slave)
        os.close(master)
    assert code == 0
    printed = json_lines(capsys.readouterr().out)
    assert len(printed) == 4
    # The first epoch may have started before the port opened, and where the repeated capture
    # wraps around an epoch can be cut: the others are fixes of the capture, decoded whole.
    expected = library_fixes(CAPTURE)
    whole = [p for p in printed[1:] if p in expected]
    assert len(whole) >= 2


@contextlib.contextmanager
def fake_gpsd(reports: list[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """A one-client gpsd on loopback: answers ?WATCH with the given report lines."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(1024))
            conn.sendall(b'{"class":"VERSION","release":"3.27","proto_major":3}\r\n')
            with contextlib.suppress(OSError):
                conn.sendall(b"".join(reports))
                conn.recv(1)  # hold the connection until the client hangs up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        server.close()
        thread.join(timeout=5)


def test_watch_prints_gpsds_tpv_reports(capsys: pytest.CaptureFixture[str]) -> None:
    chk = (DATA / "bu353s4.log.chk").read_bytes().splitlines(keepends=True)
    reports = [line for line in chk if line.startswith(b"{")]
    tpvs = [json.loads(line) for line in reports if b'"TPV"' in line]
    with fake_gpsd(reports) as (port, received):
        code = main(["gps", "watch", "--source", f"gpsd://127.0.0.1:{port}", "--count", "4"])
    assert code == 0
    assert received and received[0].startswith(b"?WATCH=")
    assert json.loads(received[0][len(b"?WATCH=") :]) == {"enable": True, "json": True}
    printed = json_lines(capsys.readouterr().out)
    assert [p.get("time") for p in printed] == [t.get("time") for t in tpvs[:4]]
    assert [p["mode"] for p in printed] == [t["mode"] for t in tpvs[:4]]
    assert printed[2]["speed"] == tpvs[2]["speed"]


def test_watch_reports_an_unreachable_gpsd(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    assert main(["gps", "watch", "--source", f"gpsd://127.0.0.1:{port}", "--count", "1"]) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err
