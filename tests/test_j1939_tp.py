"""Multi-packet J1939: TP.BAM reassembly of DM1 and VIN, and what happens when it goes wrong."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.j1939.decode import (
    PGN_DM1,
    Dm1,
    Dtc,
    J1939Decoder,
    Lamps,
    Signals,
    Vin,
    encode_dm1,
    encode_vin,
    make_id,
)
from protocols.j1939.tp import bam_frames, encode_dm1_payload, parse_dm1

DTCS = [Dtc(100, 1, 3), Dtc(110, 0, 1), Dtc(524287, 31, None), Dtc(3413, 2, 126)]
LAMPS = Lamps(mil=True, red_stop=False, amber_warning=True, protect=None)
VIN = "YV3R8R8266A123456"


def feed(
    decoder: J1939Decoder, frames: list[tuple[int, bytes]], t0: float = 0.0, dt: float = 0.05
) -> list[Signals | Dm1 | Vin]:
    out: list[Signals | Dm1 | Vin] = []
    for i, (can_id, data) in enumerate(frames):
        out += decoder.decode(can_id, data, t0 + i * dt)
    return out


def test_dm1_with_several_dtcs_is_reassembled_from_bam() -> None:
    frames = encode_dm1(LAMPS, DTCS, sa=0x0B)
    assert len(frames) > 2  # announce + data packets
    d = J1939Decoder()
    out = feed(d, frames)
    assert len(out) == 1
    dm1 = out[0]
    assert isinstance(dm1, Dm1)
    assert (dm1.sa, dm1.pgn, dm1.lamps, dm1.dtcs) == (0x0B, PGN_DM1, LAMPS, tuple(DTCS))
    assert d.stats.bam_completed == 1 and d.stats.bam_aborted == 0
    assert d.stats.decoded == 1 and d.stats.transport == len(frames) - 1


def test_bam_is_matched_on_pgn_whatever_the_priority() -> None:
    frames = [((can_id & ~(7 << 26)) | 3 << 26, data) for can_id, data in encode_vin(VIN, 0xEE)]
    out = feed(J1939Decoder(), frames)
    assert [(m.sa, m.text) for m in out if isinstance(m, Vin)] == [(0xEE, VIN)]


def test_a_vin_is_reassembled_from_bam() -> None:
    d = J1939Decoder()
    out = feed(d, encode_vin(VIN, sa=0x00))
    assert out == [Vin(t=out[0].t, sa=0, text=VIN)]


def test_out_of_order_packets_still_complete_the_transfer() -> None:
    frames = encode_dm1(LAMPS, DTCS, sa=3)
    announce, packets = frames[0], frames[1:]
    out = feed(J1939Decoder(), [announce, *reversed(packets)])
    assert len(out) == 1 and isinstance(out[0], Dm1) and out[0].dtcs == tuple(DTCS)


def test_a_repeated_packet_does_not_corrupt_the_transfer() -> None:
    frames = encode_vin(VIN)
    out = feed(J1939Decoder(), [frames[0], frames[1], frames[1], *frames[2:]])
    assert [m.text for m in out if isinstance(m, Vin)] == [VIN]


def test_a_missing_packet_is_aborted_by_the_next_announce() -> None:
    frames = encode_dm1(LAMPS, DTCS, sa=3)
    d = J1939Decoder()
    out = feed(d, frames[:2] + frames[3:])  # packet 2 lost
    assert out == []
    out = feed(d, frames, t0=1.0)  # the ECU sends its DM1 again
    assert len(out) == 1 and isinstance(out[0], Dm1)
    assert d.stats.bam_aborted == 1 and d.stats.bam_completed == 1


def test_a_transfer_that_stalls_past_the_timeout_is_aborted() -> None:
    frames = encode_vin(VIN)
    d = J1939Decoder()
    assert feed(d, frames[:2]) == []
    assert d.decode(*frames[2], 5.0) == []  # 5 s later: too late
    assert d.stats.bam_aborted == 1 and d.stats.malformed == 1
    assert feed(d, frames[3:], t0=5.1) == []  # the rest has no transfer to join
    assert d.stats.bam_completed == 0


def test_expire_aborts_idle_transfers() -> None:
    d = J1939Decoder()
    feed(d, encode_vin(VIN)[:2])
    assert d.expire(0.5) == 0
    assert d.expire(10.0) == 1
    assert d.stats.bam_aborted == 1


def test_an_abort_message_cancels_the_transfer() -> None:
    frames = encode_vin(VIN, sa=9)
    abort = (frames[0][0], bytes([255, 0xFF, 0xFF, 0xFF, 0xFF]) + frames[0][1][5:])
    d = J1939Decoder()
    assert feed(d, [frames[0], frames[1], abort, *frames[2:]]) == []
    assert d.stats.bam_aborted == 1


def test_transfers_from_two_sources_interleave() -> None:
    a = encode_dm1(LAMPS, DTCS[:2], sa=0x00)
    b = encode_dm1(Lamps(mil=False), DTCS[2:], sa=0x0B)
    mixed = [f for pair in zip(a, b, strict=False) for f in pair]
    out = feed(J1939Decoder(), mixed)
    by_sa = {m.sa: m for m in out if isinstance(m, Dm1)}
    assert by_sa[0x00].dtcs == tuple(DTCS[:2]) and by_sa[0x0B].dtcs == tuple(DTCS[2:])


def test_dm1_single_frame_with_no_active_fault_has_no_dtcs() -> None:
    frames = encode_dm1(Lamps(mil=False, red_stop=False, amber_warning=False, protect=False), [])
    assert len(frames) == 1
    (dm1,) = feed(J1939Decoder(), frames)
    assert isinstance(dm1, Dm1) and dm1.dtcs == () and dm1.lamps.mil is False


def test_dm1_single_frame_with_one_dtc() -> None:
    frames = encode_dm1(LAMPS, [Dtc(190, 2, 5)], sa=0x17)
    assert len(frames) == 1
    (dm1,) = feed(J1939Decoder(), frames)
    assert isinstance(dm1, Dm1) and dm1.dtcs == (Dtc(190, 2, 5),) and dm1.sa == 0x17


def test_data_packets_without_an_announce_are_counted_as_malformed() -> None:
    d = J1939Decoder()
    assert feed(d, encode_vin(VIN)[1:]) == []
    assert d.stats.malformed == d.stats.frames


def test_connection_mode_transport_to_another_node_is_not_ours() -> None:
    d = J1939Decoder()
    rts = bytes([16, 20, 0, 3, 0xFF, 0xCA, 0xFE, 0x00])
    assert d.decode(make_id(0xEC00, sa=0x00, priority=7, da=0x25), rts, 0.0) == []
    assert d.stats.unknown_pgn == 1


def test_a_bam_of_a_group_we_do_not_read_is_counted_unknown() -> None:
    d = J1939Decoder()
    assert feed(d, bam_frames(0xFE6B, b"DRIVER-1234*" + b"X" * 10, sa=0xEE)) == []
    assert d.stats.bam_completed == 1 and d.stats.unknown_pgn == 1


def test_an_announce_with_inconsistent_size_is_malformed() -> None:
    d = J1939Decoder()
    bad = bytes([32, 20, 0, 9, 0xFF, 0xCA, 0xFE, 0x00])  # 20 bytes cannot take 9 packets
    assert d.decode(0x1CECFF00, bad, 0.0) == []
    assert d.stats.malformed == 1


@settings(max_examples=200)
@given(
    dtcs=st.lists(
        st.builds(
            Dtc,
            spn=st.integers(1, (1 << 19) - 1),
            fmi=st.integers(0, 31),
            occurrence=st.one_of(st.none(), st.integers(0, 126)),
        ),
        max_size=40,
    ),
    sa=st.integers(0, 253),
)
def test_any_dm1_round_trips(dtcs: list[Dtc], sa: int) -> None:
    out = feed(J1939Decoder(), encode_dm1(LAMPS, dtcs, sa=sa))
    assert len(out) == 1 and isinstance(out[0], Dm1)
    assert out[0].dtcs == tuple(dtcs) and out[0].sa == sa


def test_dm1_payload_parser_ignores_a_trailing_partial_dtc() -> None:
    payload = encode_dm1_payload(LAMPS, DTCS[:2]) + b"\x01\x02"
    assert parse_dm1(payload, 0.0, 0).dtcs == tuple(DTCS[:2])
