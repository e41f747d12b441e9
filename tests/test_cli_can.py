"""`busfleet can decode | watch | sim`: what a technician types and reads."""

from __future__ import annotations

import argparse
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import can
import pytest

from busfleet.cli import main
from busfleet.commands.can import add_sim_arguments, run_sim
from protocols.j1939.candump import format_candump_line
from protocols.j1939.decode import PGN_CCVS1, J1939Decoder, encode


def lines_of(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def simulate(tmp_path: Path, *extra: str) -> Path:
    log = tmp_path / "drive.log"
    argv = ["can", "sim", "--log", str(log), "--seconds", "4", "--hz", "2", "--start", "1e9"]
    assert main([*argv, *extra]) == 0
    return log


@pytest.mark.parametrize(
    "argv", [["can"], ["can", "decode"], ["can", "watch"], ["can", "sim"]], ids=" ".join
)
def test_every_can_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: busfleet can" in capsys.readouterr().out


def test_decode_prints_one_json_object_per_understood_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = simulate(tmp_path, "--speed-kmh", "36")
    capsys.readouterr()
    assert main(["can", "decode", str(log)]) == 0
    out = lines_of(capsys.readouterr().out)
    frames = [line for line in log.read_text().splitlines() if line]
    assert len(out) == len(frames)
    for obj in out:
        assert {"t", "pgn", "sa", "name", "spn"} <= obj.keys()
        assert isinstance(obj["pgn"], int) and isinstance(obj["sa"], int)
        assert all(key.isdigit() for key in obj["spn"])
    speeds = [o["spn"]["84"] for o in out if o["pgn"] == PGN_CCVS1]
    assert speeds and max(speeds) == pytest.approx(36.0, abs=1 / 256)


def test_decode_leaves_out_not_available_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = simulate(tmp_path, "--na-values")
    capsys.readouterr()
    assert main(["can", "decode", str(log)]) == 0
    out = lines_of(capsys.readouterr().out)
    assert out and all(o["spn"] == {} and "errors" not in o for o in out)
    assert any(o["pgn"] == PGN_CCVS1 for o in out)  # the speed message came, without a speed


def test_decode_prints_dtcs_and_the_vin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = simulate(tmp_path, "--dtc", "110:0:3", "--dtc", "100:1", "--vin", "YV3R8R8266A123456")
    capsys.readouterr()
    assert main(["can", "decode", str(log), "--stats"]) == 0
    captured = capsys.readouterr()
    out = lines_of(captured.out)
    dm1 = [o for o in out if o["name"] == "DM1"]
    assert dm1 and dm1[0]["dtcs"] == [
        {"spn": 110, "fmi": 0, "occurrence": 3},
        {"spn": 100, "fmi": 1, "occurrence": 1},
    ]
    assert [o["vin"] for o in out if o["name"] == "VI"] == ["YV3R8R8266A123456"]
    assert "bam_completed=" in captured.err


def test_decode_skips_lines_that_are_not_j1939_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    can_id, data = encode(PGN_CCVS1, {84: 12.0}, sa=0x11)
    log = tmp_path / "mixed.log"
    log.write_text(
        "\n".join(
            [
                "garbage",
                "(1.000000) can0 123#0102",  # 11-bit id: not J1939
                format_candump_line(2.0, "can0", can_id, data),
                "(3.000000) can0 18FF1100#0102030405060708",  # proprietary PGN
            ]
        )
    )
    assert main(["can", "decode", str(log), "--stats"]) == 0
    captured = capsys.readouterr()
    assert lines_of(captured.out) == [
        {"t": 2.0, "pgn": PGN_CCVS1, "sa": 0x11, "name": "CCVS1", "spn": {"84": 12.0}}
    ]
    assert "unknown_pgn=1" in captured.err and "lines_skipped=2" in captured.err


def test_decode_of_a_missing_file_fails_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["can", "decode", str(tmp_path / "nope.log")]) == 2
    assert "nope.log" in capsys.readouterr().err


def test_watch_prints_frames_from_a_live_bus(capsys: pytest.CaptureFixture[str]) -> None:
    channel = f"test-cli-watch-{uuid.uuid4().hex}"
    result: list[int] = []
    argv = ["can", "watch", "--interface", "virtual", "--channel", channel]
    watcher = threading.Thread(
        target=lambda: result.append(main([*argv, "--count", "3", "--seconds", "20"]))
    )
    can_id, data = encode(PGN_CCVS1, {84: 50.0})
    with can.Bus(interface="virtual", channel=channel) as bus:
        watcher.start()
        # The watcher's bus may not exist yet: keep sending until it has seen enough.
        for _ in range(400):
            bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=True))
            watcher.join(timeout=0.05)
            if not watcher.is_alive():
                break
    assert not watcher.is_alive() and result == [0]
    out = lines_of(capsys.readouterr().out)
    assert len(out) == 3 and all(o["spn"] == {"84": 50.0} for o in out)


def test_run_sim_plugs_into_another_parser_and_sends_on_a_virtual_bus() -> None:
    channel = f"test-cli-sim-{uuid.uuid4().hex}"
    parser = argparse.ArgumentParser(prog="busfleet sim can")
    add_sim_arguments(parser)
    args = parser.parse_args(
        ["--interface", "virtual", "--channel", channel, "--seconds", "1", "--hz", "3", "--fast"]
    )
    with can.Bus(interface="virtual", channel=channel) as rx:
        assert run_sim(args) == 0
        decoder = J1939Decoder()
        while (msg := rx.recv(timeout=0.5)) is not None:
            decoder.decode(msg.arbitration_id, bytes(msg.data), msg.timestamp)
    assert decoder.stats.frames > 0 and decoder.stats.frames == decoder.stats.decoded


def test_sim_without_an_output_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["can", "sim", "--seconds", "1"]) == 2
    assert "--interface" in capsys.readouterr().err
