"""The vehicle snapshot: latest values, n/a makes a value unknown, events on changes."""

from __future__ import annotations

import pytest

from protocols.j1939.decode import (
    PGN_AMB,
    PGN_CCVS1,
    PGN_DC1,
    PGN_DC2,
    PGN_DD1,
    PGN_EEC1,
    PGN_ET1,
    PGN_LFE1,
    PGN_VDHR,
    PGN_VEP1,
    Dm1,
    Dtc,
    J1939Decoder,
    Lamps,
    Signals,
    Vin,
    encode,
    encode_telltales,
)
from protocols.j1939.vehicle import VehicleEvent, VehicleState, apply, to_dict


def sig(pgn: int, values: dict[int, float | int], t: float = 1.0, sa: int = 0) -> Signals:
    (msg,) = J1939Decoder().decode(*encode(pgn, values, sa), t)
    assert isinstance(msg, Signals)
    return msg


def telltales(states: dict[int, int], t: float = 1.0) -> Signals:
    (frame,) = encode_telltales(states)
    (msg,) = J1939Decoder().decode(*frame, t)
    assert isinstance(msg, Signals)
    return msg


def run(state: VehicleState, *msgs: Signals | Dm1 | Vin) -> tuple[VehicleState, list[VehicleEvent]]:
    events: list[VehicleEvent] = []
    for m in msgs:
        state, ev = apply(state, m)
        events += ev
    return state, events


def kinds(events: list[VehicleEvent]) -> list[tuple[str, int | None]]:
    return [(e.kind, e.door) for e in events]


def test_each_quantity_comes_from_its_spn() -> None:
    state, _ = run(
        VehicleState(),
        sig(PGN_CCVS1, {84: 36.5, 70: 1}),
        sig(PGN_EEC1, {190: 1200.0}),
        sig(PGN_ET1, {110: 82}),
        sig(PGN_DD1, {96: 64.4}),
        sig(PGN_VDHR, {917: 125_000}),
        sig(PGN_LFE1, {183: 12.5}),
        sig(PGN_VEP1, {168: 27.6}),
        sig(PGN_AMB, {171: 24.5}, t=7.0),
    )
    assert state.speed_kmh == 36.5 and state.parking_brake is True
    assert state.engine_rpm == 1200.0 and state.coolant_c == 82
    assert state.fuel_pct == pytest.approx(64.4) and state.odometer_m == 125_000
    assert state.fuel_rate_lph == pytest.approx(12.5) and state.battery_v == pytest.approx(27.6)
    assert state.ambient_c == 24.5 and state.updated == 7.0


def test_a_not_available_value_makes_the_quantity_unknown_again() -> None:
    state, _ = run(VehicleState(), sig(PGN_CCVS1, {84: 50.0}), sig(PGN_CCVS1, {}, t=2.0))
    assert state.speed_kmh is None and state.updated == 2.0


def test_apply_is_pure_and_a_repeat_changes_nothing() -> None:
    first = VehicleState()
    second, _ = apply(first, sig(PGN_CCVS1, {84: 20.0}, t=1.0))
    assert first.speed_kmh is None
    third, events = apply(second, sig(PGN_CCVS1, {84: 20.0}, t=2.0))
    assert third is second and events == [] and third.updated == 1.0


def test_doors_from_dc2_give_per_door_events() -> None:
    state, events = run(VehicleState(), sig(PGN_DC2, {3413: 0, 3416: 0}))
    assert state.door_open[:3] == (False, False, None) and state.doors_open is False
    assert events == []  # unknown -> closed is how every bus starts
    state, events = run(state, sig(PGN_DC2, {3413: 0, 3416: 1}, t=2.0))
    assert kinds(events) == [("doors_opened", None), ("door_opened", 2)]
    assert state.doors_open is True and state.door_open[1] is True
    state, events = run(state, sig(PGN_DC2, {3413: 0, 3416: 0}, t=3.0))
    assert kinds(events) == [("doors_closed", None), ("door_closed", 2)]


def test_door_ten_is_read_from_the_last_slot_of_dc2() -> None:
    state, events = run(VehicleState(), sig(PGN_DC2, {3440: 1}))
    assert state.door_open[9] is True and kinds(events)[-1] == ("door_opened", 10)


def test_position_of_doors_in_dc1_drives_doors_open() -> None:
    state, events = run(VehicleState(), sig(PGN_DC1, {1821: 0}))
    assert state.doors_open is True and kinds(events) == [("doors_opened", None)]
    state, _ = run(state, sig(PGN_DC1, {1821: 1}))  # closing the last door: still open
    assert state.doors_open is True
    state, events = run(state, sig(PGN_DC1, {1821: 2, 1820: 1}))
    assert state.doors_open is False and state.ramp_out is True
    assert kinds(events) == [("doors_closed", None), ("ramp_out", None)]


def test_stop_request_and_kneeling_come_from_tell_tales() -> None:
    state, events = run(VehicleState(), telltales({38: 1, 44: 3}))
    assert state.stop_request is True and state.kneeling is True
    assert kinds(events) == [("stop_requested", None), ("kneeling_started", None)]
    # A frame of another block leaves them alone.
    state, events = run(state, telltales({6: 0, 7: 1}))
    assert state.stop_request is True and state.parking_brake is True and state.ramp_out is False
    state, events = run(state, telltales({38: 0, 44: 0}))
    assert kinds(events) == [("stop_request_cleared", None), ("kneeling_ended", None)]


def test_dtcs_appear_and_clear_per_ecu() -> None:
    lamps = Lamps(amber_warning=True)
    engine = Dm1(t=1.0, sa=0x00, lamps=lamps, dtcs=(Dtc(110, 0, 1), Dtc(100, 1, 2)))
    brakes = Dm1(t=1.5, sa=0x0B, lamps=lamps, dtcs=(Dtc(789, 3, 1),))
    state, events = run(VehicleState(), engine, brakes)
    assert [e.kind for e in events] == ["dtc_new"] * 3
    assert {(d.spn, d.fmi) for d in state.dtcs} == {(110, 0), (100, 1), (789, 3)}
    # The engine's next DM1 has one fault left; its occurrence count moved on.
    later = Dm1(t=2.0, sa=0x00, lamps=lamps, dtcs=(Dtc(100, 1, 3),))
    state, events = run(state, later)
    assert [(e.kind, e.dtc, e.sa) for e in events] == [("dtc_cleared", Dtc(110, 0, 1), 0)]
    assert {(d.spn, d.fmi) for d in state.dtcs} == {(100, 1), (789, 3)}
    state, events = run(state, Dm1(t=3.0, sa=0x0B, lamps=lamps, dtcs=()))
    assert [e.kind for e in events] == ["dtc_cleared"]
    assert state.dtcs == (Dtc(100, 1, 3),)


def test_the_vin_is_kept() -> None:
    state, events = apply(VehicleState(), Vin(t=4.0, sa=0, text="YV3R8R8266A123456"))
    assert state.vin == "YV3R8R8266A123456" and state.updated == 4.0 and events == []


def test_to_dict_is_plain_data() -> None:
    state, _ = run(VehicleState(), sig(PGN_CCVS1, {84: 10.0}))
    state, _ = apply(state, Dm1(t=1.0, sa=0, lamps=Lamps(), dtcs=(Dtc(1, 2, 3),)))
    d = to_dict(state)
    assert d["speed_kmh"] == 10.0
    assert d["dtcs"] == [{"spn": 1, "fmi": 2, "occurrence": 3}]
    assert len(d["door_open"]) == 10  # type: ignore[arg-type]
    assert "dtcs_by_sa" not in d


def test_a_repeated_dm1_is_no_news_but_the_same_faults_from_another_ecu_are() -> None:
    lamps = Lamps(amber_warning=True)
    engine = Dm1(t=1.0, sa=0x00, lamps=lamps, dtcs=(Dtc(110, 0, 1),))
    state, events = run(VehicleState(), engine)
    again, events = apply(state, Dm1(t=2.0, sa=0x00, lamps=lamps, dtcs=(Dtc(110, 0, 1),)))
    assert again is state and events == []
    state, events = apply(state, Dm1(t=3.0, sa=0x0B, lamps=lamps, dtcs=(Dtc(110, 0, 1),)))
    assert [(e.kind, e.sa) for e in events] == [("dtc_new", 0x0B)]
    assert state.dtcs == (Dtc(110, 0, 1), Dtc(110, 0, 1)) and state.updated == 3.0
    state, events = apply(state, Dm1(t=4.0, sa=0x0B, lamps=lamps, dtcs=(Dtc(110, 0, 2),)))
    assert events == [] and state.dtcs[1].occurrence == 2 and state.updated == 4.0
