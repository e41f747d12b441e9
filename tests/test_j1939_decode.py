"""Single-frame bus-FMS decoding: ids, in-band n/a and error values, the DBC, round trips."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files

import cantools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import J1939Error
from protocols.j1939.decode import (
    PGN_CCVS1,
    PGN_DC1,
    PGN_DM1,
    PGN_FMS1,
    PGN_TD,
    Dm1,
    J1939Decoder,
    Signals,
    Vin,
    decode_frame,
    encode,
    encode_telltales,
    make_id,
    messages,
    split_id,
    td_datetime,
    td_values,
)

SIGNAL_PGNS = sorted(p for p in messages() if p not in (PGN_DM1, PGN_FMS1))


@cache
def cantools_db() -> cantools.database.can.Database:
    db = cantools.database.can.Database()
    db.add_dbc_string(files("protocols.j1939").joinpath("busfleet.dbc").read_text(encoding="ascii"))
    return db


def one(decoder: J1939Decoder, can_id: int, data: bytes, t: float = 0.0) -> Signals:
    out = decoder.decode(can_id, data, t)
    assert len(out) == 1
    assert isinstance(out[0], Signals)
    return out[0]


def test_the_dbc_has_every_parameter_group_the_reference_table_lists() -> None:
    names = {m.name for m in messages().values()}
    assert names >= {
        "EEC1", "EEC2", "CCVS1", "ET1", "LFE1", "DD1", "VDHR", "HOURS", "LFC1", "AMB",
        "VEP1", "TCO1", "TD", "DC1", "DC2", "FMS1", "DM1",
    }  # fmt: skip
    dc2 = messages()[0xFDA5]
    open_spns = [f.spn for f in dc2.fields if f.name.startswith(f"SPN{f.spn}_OpenStatusDoor")]
    assert len(open_spns) == 10


def test_our_reading_of_the_dbc_agrees_with_cantools_for_every_signal() -> None:
    db = cantools_db()
    for pgn, msg in messages().items():
        ct = db.get_message_by_name(msg.name)
        assert split_id(ct.frame_id)[1] == pgn
        assert ct.is_extended_frame
        ours = {f.name: f for f in msg.fields}
        assert set(ours) == {s.name for s in ct.signals}
        for s in ct.signals:
            f = ours[s.name]
            assert (f.start, f.length) == (s.start, s.length)
            assert s.byte_order == "little_endian" and not s.is_signed
            assert math.isclose(f.scale, s.scale) and math.isclose(f.offset, s.offset)


def test_a_pdu2_id_splits_into_priority_pgn_and_source() -> None:
    assert split_id(0x0CF00400) == (3, 0xF004, 0x00)
    assert split_id(0x18FEF1EE) == (6, 0xFEF1, 0xEE)


def test_a_pdu1_destination_is_zeroed_in_the_pgn() -> None:
    assert split_id(0x18EA17F9) == (6, 0xEA00, 0xF9)
    assert make_id(0xEA00, sa=0xF9, priority=6, da=0x17) == 0x18EA17F9
    assert split_id(make_id(0xEA00, sa=0xF9, da=0x42))[1] == 0xEA00


@given(
    pgn=st.integers(0, 0x3FFFF),
    sa=st.integers(0, 255),
    prio=st.integers(0, 7),
    da=st.integers(0, 255),
)
def test_make_id_and_split_id_are_inverse(pgn: int, sa: int, prio: int, da: int) -> None:
    p, g, s = split_id(make_id(pgn, sa, prio, da))
    expected = pgn & 0x3FF00 if (pgn >> 8) & 0xFF < 240 else pgn
    assert (p, g, s) == (prio, expected, sa)


def test_make_id_rejects_fields_out_of_range() -> None:
    with pytest.raises(ValueError):
        make_id(0x40000, 0)
    with pytest.raises(ValueError):
        make_id(0xFEF1, 256)


@pytest.mark.parametrize("sa", [0x00, 0x17, 0xEE, 0xFE])
@pytest.mark.parametrize("priority", [0, 3, 6, 7])
def test_messages_match_on_pgn_whatever_the_source_and_priority(sa: int, priority: int) -> None:
    _, data = encode(PGN_CCVS1, {84: 42.5})
    sig = one(J1939Decoder(), make_id(PGN_CCVS1, sa, priority), data)
    assert (sig.pgn, sig.sa, sig.name) == (PGN_CCVS1, sa, "CCVS1")
    assert sig.spn[84] == 42.5


def test_not_available_speed_is_absent_and_not_255_996() -> None:
    data = b"\xff" * 8
    naive = cantools_db().get_message_by_name("CCVS1").decode_simple(data, decode_choices=False)
    assert naive["SPN84_WheelBasedVehicleSpeed"] == pytest.approx(255.996, abs=1e-3)
    sig = one(J1939Decoder(), 0x18FEF100, data)
    assert 84 not in sig.spn
    assert sig.spn == {}
    assert sig.errors == frozenset()


def test_an_error_value_is_reported_as_an_error_not_a_number() -> None:
    data = bytes([0xFF, 0x00, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])  # speed 0xFE00, states n/a
    sig = one(J1939Decoder(), 0x18FEF100, data)
    assert 84 not in sig.spn
    assert sig.errors == {84}


def test_reserved_raw_values_are_neither_values_nor_errors() -> None:
    data = bytes([0xFF, 0x00, 0xFB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])  # 0xFB00 is reserved
    sig = one(J1939Decoder(), 0x18FEF100, data)
    assert 84 not in sig.spn and 84 not in sig.errors


def test_two_bit_states_treat_2_as_error_and_3_as_not_available() -> None:
    # CCVS1 byte 0: bits 2-3 parking brake. 0b1011 -> parking brake = 2 (error).
    sig = one(J1939Decoder(), 0x18FEF100, bytes([0xFB]) + b"\xff" * 7)
    assert 70 in sig.errors and 70 not in sig.spn
    sig = one(J1939Decoder(), 0x18FEF100, bytes([0xF7]) + b"\xff" * 7)
    assert sig.spn[70] == 1


def test_largest_valid_values_decode() -> None:
    sig = one(J1939Decoder(), 0x18FEF100, bytes([0xFF, 0xFF, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))
    assert sig.spn[84] == pytest.approx(0xFAFF / 256)
    sig = one(J1939Decoder(), 0x18FEEE00, bytes([250]) + b"\xff" * 7)
    assert sig.spn[110] == 210


def test_door_position_uses_four_bit_not_available() -> None:
    _, data = encode(PGN_DC1, {1821: 0})
    assert one(J1939Decoder(), 0x18FE4E00, data).spn[1821] == 0
    sig = one(J1939Decoder(), 0x18FE4E00, b"\xff" * 8)
    assert 1821 not in sig.spn


def test_tell_tales_are_numbered_block_times_fifteen_plus_position() -> None:
    frames = encode_telltales({38: 1, 44: 0, 6: 2, 7: 7})
    decoder = J1939Decoder()
    found: dict[int, int] = {}
    for can_id, data in frames:
        sig = one(decoder, can_id, data)
        assert sig.pgn == PGN_FMS1
        found.update(sig.telltales)
    assert found == {38: 1, 44: 0, 6: 2}  # 7 = not available is left out


def test_time_date_round_trips_through_td() -> None:
    when = datetime(2024, 2, 29, 23, 59, 58, 750_000, tzinfo=UTC)
    sig = one(J1939Decoder(), *encode(PGN_TD, td_values(when)))
    assert td_datetime(sig) == when
    assert td_datetime(one(J1939Decoder(), 0x18FEE600, b"\xff" * 8)) is None


@st.composite
def valid_values(draw: st.DrawFn, pgn: int) -> dict[int, float | int]:
    out: dict[int, float | int] = {}
    for f in messages()[pgn].fields:
        if f.spn is None or not draw(st.booleans()):
            continue
        raw = draw(st.integers(0, f.valid_max))
        out[f.spn] = raw * f.scale + f.offset
    return out


@pytest.mark.parametrize("pgn", SIGNAL_PGNS, ids=[messages()[p].name for p in SIGNAL_PGNS])
@settings(max_examples=60)
@given(data=st.data())
def test_encode_then_decode_gives_the_values_back(pgn: int, data: st.DataObject) -> None:
    values = data.draw(valid_values(pgn))
    can_id, payload = encode(pgn, values, sa=0x21)
    sig = one(J1939Decoder(), can_id, payload, 5.0)
    assert (sig.pgn, sig.sa, sig.t) == (pgn, 0x21, 5.0)
    assert set(sig.spn) == set(values)
    for spn, v in values.items():
        assert sig.spn[spn] == pytest.approx(v, abs=messages()[pgn].field_for(spn).scale / 2)


@pytest.mark.parametrize("pgn", SIGNAL_PGNS, ids=[messages()[p].name for p in SIGNAL_PGNS])
@settings(max_examples=40)
@given(data=st.data())
def test_our_decode_agrees_with_cantools_on_valid_values(pgn: int, data: st.DataObject) -> None:
    values = data.draw(valid_values(pgn))
    _, payload = encode(pgn, values)
    msg = messages()[pgn]
    reference = (
        cantools_db().get_message_by_name(msg.name).decode_simple(payload, decode_choices=False)
    )
    sig = decode_frame(make_id(pgn, 0), payload, 0.0)
    for f in msg.fields:
        if f.spn in values:
            assert sig.spn[f.spn] == pytest.approx(reference[f.name])


def test_encode_sends_missing_signals_as_not_available_and_marks_errors() -> None:
    _, data = encode(PGN_CCVS1, {}, errors=[84])
    sig = decode_frame(0x18FEF100, data, 0.0)
    assert sig.spn == {} and sig.errors == {84}


def test_encode_refuses_unknown_spns_and_out_of_range_values() -> None:
    with pytest.raises(ValueError):
        encode(PGN_CCVS1, {190: 1000})
    with pytest.raises(ValueError):
        encode(PGN_CCVS1, {84: 300.0})
    with pytest.raises(ValueError):
        encode(0x1234, {})


def test_strict_decode_raises_for_unknown_pgn_and_bad_length() -> None:
    with pytest.raises(J1939Error):
        decode_frame(0x18FF0000, b"\x00" * 8, 0.0)
    with pytest.raises(J1939Error):
        decode_frame(0x18FEF100, b"\x00" * 7, 0.0)
    with pytest.raises(J1939Error):
        decode_frame(0x2000_0000, b"\x00" * 8, 0.0)


def test_bad_frames_are_counted_not_raised() -> None:
    d = J1939Decoder()
    assert d.decode(0x18FEF100, b"\x00" * 5, 0.0) == []
    assert d.decode(-1, b"\x00" * 8, 0.0) == []
    assert d.decode(0x18FF5500, b"\x00" * 8, 0.0) == []
    assert (d.stats.frames, d.stats.malformed, d.stats.unknown_pgn) == (3, 2, 1)


ids = st.one_of(
    st.integers(-10, 0x3FFFFFFF),
    st.sampled_from([0x18ECFF00, 0x1CEBFF00, 0x18FECA00, 0x18FEEC00, 0x18FD7D00]).flatmap(
        lambda base: st.integers(0, 255).map(lambda sa: base | sa)
    ),
    st.sampled_from([make_id(p, 0) for p in messages()]),
)


@settings(max_examples=400)
@given(frames=st.lists(st.tuples(ids, st.binary(max_size=10), st.floats(0, 1e4)), max_size=30))
def test_any_frames_decode_or_are_counted_and_never_raise(
    frames: list[tuple[int, bytes, float]],
) -> None:
    d = J1939Decoder()
    for can_id, data, t in frames:
        for msg in d.decode(can_id, data, t):
            assert isinstance(msg, Signals | Dm1 | Vin)
            if isinstance(msg, Signals):
                assert all(math.isfinite(v) for v in msg.spn.values())
                assert not (set(msg.spn) & msg.errors)
    s = d.stats
    assert s.frames == len(frames)
    assert s.frames == s.decoded + s.unknown_pgn + s.malformed + s.transport
