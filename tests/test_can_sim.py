"""The CAN simulator: frames consistent with the drive, faults, and the python-can virtual bus."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import can
import pytest

from hw_sim.can_sim import (
    CanSimulator,
    Faults,
    cycle_frames,
    frames_for,
    placeholder_drive,
    replay_candump,
)
from hw_sim.truth import VehicleTruth
from protocols.j1939.candump import format_candump_line
from protocols.j1939.decode import Dm1, Dtc, J1939Decoder, Signals, Vin
from protocols.j1939.vehicle import VehicleState, apply

TRUTH = VehicleTruth(
    t=1_700_000_000.0,
    lat=-16.92,
    lon=145.77,
    speed_mps=12.5,
    heading_deg=90.0,
    odometer_m=123_456.0,
    doors_open=False,
    engine_rpm=1450.0,
    coolant_c=84.6,
    fuel_pct=61.0,
)
AT_STOP = VehicleTruth(
    t=1_700_000_100.0,
    lat=-16.92,
    lon=145.77,
    speed_mps=0.0,
    heading_deg=90.0,
    odometer_m=124_000.0,
    doors_open=True,
    engine_rpm=650.0,
    coolant_c=85.0,
    fuel_pct=60.0,
    stop_index=3,
)


@pytest.fixture
def channel() -> str:
    return f"test-can-sim-{uuid.uuid4().hex}"


@pytest.fixture
def buses(channel: str) -> Iterator[tuple[can.BusABC, can.BusABC]]:
    tx = can.Bus(interface="virtual", channel=channel)
    rx = can.Bus(interface="virtual", channel=channel)
    try:
        yield tx, rx
    finally:
        tx.shutdown()
        rx.shutdown()


def receive(rx: can.BusABC, n: int) -> list[can.Message]:
    out: list[can.Message] = []
    for _ in range(n):
        msg = rx.recv(timeout=2.0)
        assert msg is not None, f"only {len(out)} of {n} frames arrived"
        out.append(msg)
    assert rx.recv(timeout=0.0) is None
    return out


def decode_all(frames: list[tuple[int, bytes]], t: float = 0.0) -> list[Signals | Dm1 | Vin]:
    d = J1939Decoder()
    out: list[Signals | Dm1 | Vin] = []
    for i, (can_id, data) in enumerate(frames):
        out += d.decode(can_id, data, t + i * 0.01)
    assert d.stats.malformed == 0 and d.stats.unknown_pgn == 0
    return out


def state_of(msgs: list[Signals | Dm1 | Vin]) -> VehicleState:
    state = VehicleState()
    for m in msgs:
        state, _ = apply(state, m)
    return state


def test_one_cycle_is_consistent_with_the_drive() -> None:
    state = state_of(decode_all(frames_for(TRUTH)))
    assert state.speed_kmh == pytest.approx(TRUTH.speed_mps * 3.6, abs=1 / 256)
    assert state.engine_rpm == pytest.approx(TRUTH.engine_rpm, abs=0.125)
    assert state.coolant_c == round(TRUTH.coolant_c)
    assert state.fuel_pct == pytest.approx(TRUTH.fuel_pct, abs=0.4)
    assert state.odometer_m == pytest.approx(TRUTH.odometer_m, abs=5)
    assert state.doors_open is False and state.door_open[:2] == (False, False)
    assert state.battery_v is not None and state.ambient_c is not None
    assert state.kneeling is False


def test_at_a_stop_the_doors_are_open_and_the_bus_kneels() -> None:
    state = state_of(decode_all(frames_for(AT_STOP)))
    assert state.speed_kmh == 0 and state.doors_open is True
    assert state.door_open[:2] == (True, True) and state.kneeling is True


def test_the_source_address_is_the_one_configured() -> None:
    msgs = decode_all(frames_for(TRUTH, sa=0x27))
    assert msgs and {m.sa for m in msgs} == {0x27}


def test_not_available_fault_leaves_every_value_unknown() -> None:
    msgs = decode_all(frames_for(TRUTH, faults=Faults(na_values=True)))
    assert msgs and all(isinstance(m, Signals) and not m.spn and not m.errors for m in msgs)
    state = state_of(msgs)
    assert state.speed_kmh is None and state.engine_rpm is None and state.doors_open is None


def test_error_fault_sends_in_band_errors() -> None:
    msgs = decode_all(frames_for(TRUTH, faults=Faults(error_values=True)))
    ccvs = next(m for m in msgs if isinstance(m, Signals) and m.name == "CCVS1")
    assert 84 in ccvs.errors and 84 not in ccvs.spn


def test_burst_pads_a_cycle_to_the_requested_frame_count() -> None:
    assert len(cycle_frames(TRUTH, faults=Faults(burst_fps=500))) == 500


def test_simulator_frames_reach_the_decoder_over_a_virtual_bus(
    buses: tuple[can.BusABC, can.BusABC],
) -> None:
    tx, rx = buses
    sim = CanSimulator(tx, sa=0x00, vin="YV3R8R8266A123456")
    sent = sim.send_truth(TRUTH)
    d = J1939Decoder()
    msgs: list[Signals | Dm1 | Vin] = []
    for m in receive(rx, sent):
        assert m.is_extended_id
        msgs += d.decode(m.arbitration_id, bytes(m.data), m.timestamp)
    state = state_of(msgs)
    assert state.speed_kmh == pytest.approx(45.0, abs=1 / 256)
    assert state.vin == "YV3R8R8266A123456"
    assert d.stats.bam_completed == 1


def test_dtcs_are_sent_by_bam_and_come_back(buses: tuple[can.BusABC, can.BusABC]) -> None:
    tx, rx = buses
    dtcs = [Dtc(110, 0, 2), Dtc(100, 1, 1), Dtc(3413, 2, 4)]
    sim = CanSimulator(tx, Faults(dm1=dtcs), sa=0x00)
    sent = sim.send_truth(TRUTH)
    d = J1939Decoder()
    dm1s = [
        r
        for m in receive(rx, sent)
        for r in d.decode(m.arbitration_id, bytes(m.data), m.timestamp)
        if isinstance(r, Dm1)
    ]
    assert [x.dtcs for x in dm1s] == [tuple(dtcs)]
    assert dm1s[0].lamps.amber_warning is True


def test_a_silent_gateway_sends_nothing(buses: tuple[can.BusABC, can.BusABC]) -> None:
    tx, rx = buses
    assert CanSimulator(tx, Faults(silent=True)).send_truth(TRUTH) == 0
    assert rx.recv(timeout=0.05) is None


def test_send_burst_sends_the_number_of_frames_asked_for(
    buses: tuple[can.BusABC, can.BusABC],
) -> None:
    tx, rx = buses
    sent = CanSimulator(tx).send_burst(0.1, fps=300)
    assert sent == 30
    assert len(receive(rx, sent)) == 30


def test_a_candump_log_replays_onto_the_bus(
    tmp_path: Path, buses: tuple[can.BusABC, can.BusABC]
) -> None:
    tx, rx = buses
    frames = frames_for(TRUTH)
    log = tmp_path / "drive.log"
    lines = [
        format_candump_line(100.0 + i * 0.001, "can0", i_, d) for i, (i_, d) in enumerate(frames)
    ]
    log.write_text("# captured\n" + "\n".join(lines) + "\n(100.5) can0 123#0102\n")
    assert replay_candump(log, tx, speed=0) == len(frames) + 1
    got = receive(rx, len(frames) + 1)
    assert [(m.arbitration_id, bytes(m.data)) for m in got[:-1]] == frames
    assert not got[-1].is_extended_id and got[-1].arbitration_id == 0x123


def test_the_placeholder_drive_stops_with_doors_open_and_moves_with_them_closed() -> None:
    drive = list(islice(placeholder_drive(0.0, speed_kmh=36.0, drive_s=10, dwell_s=5), 30))
    assert all(t.doors_open == (t.speed_mps == 0) for t in drive)
    assert any(t.doors_open for t in drive) and any(not t.doors_open for t in drive)
    odo = [t.odometer_m for t in drive]
    assert odo == sorted(odo) and odo[-1] == pytest.approx(20 * 10.0)
