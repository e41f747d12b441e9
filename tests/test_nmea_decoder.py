"""Behaviour of the sans-IO NMEA decoder: framing, fields, epochs, dates, bad input."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from protocols.errors import NmeaError
from protocols.nmea.decoder import MAX_PENDING_FIXES, Fix, NmeaDecoder
from protocols.nmea.framing import MAX_SENTENCE, InvalidSentence, checksum, parse_sentence

DATA = Path(__file__).resolve().parent.parent / "data" / "nmea"
KNOT = 1852.0 / 3600.0


def nmea(body: str) -> bytes:
    """A framed sentence with its checksum and CR LF."""
    return f"${body}*{checksum(body):02X}\r\n".encode()


def decode(*chunks: bytes) -> tuple[list[Fix], NmeaDecoder]:
    decoder = NmeaDecoder()
    for chunk in chunks:
        decoder.receive_data(chunk)
    fixes = []
    fix = decoder.flush()
    while fix is not None:
        fixes.append(fix)
        fix = decoder.next_fix()
    return fixes, decoder


def capture_bytes(name: str) -> bytes:
    lines = (DATA / name).read_bytes().splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(b"#"))


EPOCH_1 = (
    nmea("GPGGA,030719.000,3747.0873,S,17518.8938,E,1,08,1.1,59.9,M,23.7,M,,0000")
    + nmea("GPGSA,A,3,17,28,06,01,30,20,26,13,,,,,1.8,1.1,1.5")
    + nmea("GPRMC,030719.000,A,3747.0873,S,17518.8938,E,0.69,181.39,311214,,,A")
)
EPOCH_2 = (
    nmea("GPGGA,030720.000,3747.0875,S,17518.8938,E,1,08,1.1,59.8,M,23.7,M,,0000")
    + nmea("GPGSA,A,3,17,28,06,01,30,20,26,13,,,,,1.8,1.1,1.5")
    + nmea("GPRMC,030720.000,A,3747.0875,S,17518.8938,E,1.15,181.39,311214,,,A")
)


# -- framing ------------------------------------------------------------------------------------


def test_checksum_is_the_xor_a_real_receiver_sent() -> None:
    line = "$GPGSA,A,3,17,28,06,01,30,20,26,13,,,,,1.8,1.1,1.5*33"  # bu353s4.log
    assert checksum(line[1 : line.index("*")]) == 0x33


def test_a_sentence_splits_into_talker_type_and_fields() -> None:
    sentence = parse_sentence(b"$GPGSA,A,3,17,28,06,01,30,20,26,13,,,,,1.8,1.1,1.5*33\r\n")
    assert (sentence.talker, sentence.type) == ("GP", "GSA")
    assert sentence.fields[:3] == ("A", "3", "17")
    assert sentence.fields[-3:] == ("1.8", "1.1", "1.5")
    assert not sentence.proprietary


def test_a_proprietary_sentence_has_talker_p_and_the_rest_as_type() -> None:
    sentence = parse_sentence(nmea("PUBX,00,081350.00,4717.113210,N"))
    assert (sentence.talker, sentence.type, sentence.proprietary) == ("P", "UBX", True)
    assert sentence.fields[0] == "00"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"$GPGSA,A,3,17,28,06,01,30,20,26,13,,,,,1.8,1.1,1.5*34", "bad_checksum"),
        (b"$GPGSA,A,3,17,28,06,01,30,20,26,13,,,,,1.8,1.1,1.5*3", "bad_checksum"),
        (b"$GPGSA,A,3,17,28,06,01,30,20,26,13,,,,,1.8,1.1,1.5*XY", "bad_checksum"),
        (b"$GNRMC,001053.00,A,4404.14083,N,12118.85886,W,0.", "truncated"),
        (b"\xb5b\x01\x07\x5c\x00", "junk"),
        (b"GPGGA,1,2,3*00", "junk"),
        (b"$" + b"A" * MAX_SENTENCE + b"*00", "overlong"),
        (b"$GP\x01GA,1*00", "junk"),
        (nmea(""), "bad_address"),
        (nmea("G-GGA,1"), "bad_address"),
    ],
)
def test_an_invalid_line_raises_invalid_sentence_with_its_reason(line: bytes, reason: str) -> None:
    with pytest.raises(InvalidSentence) as info:
        parse_sentence(line)
    assert info.value.reason == reason
    assert isinstance(info.value, NmeaError)


# -- one fix per epoch ---------------------------------------------------------------------------


def test_the_sentences_of_one_epoch_make_one_fix_emitted_when_the_next_epoch_starts() -> None:
    decoder = NmeaDecoder()
    decoder.receive_data(EPOCH_1)
    assert decoder.next_fix() is None  # the epoch may still get sentences
    decoder.receive_data(EPOCH_2[:20])  # the next epoch's first sentence, not yet complete
    assert decoder.next_fix() is None
    decoder.receive_data(EPOCH_2[20:])
    fix = decoder.next_fix()
    assert fix is not None
    assert fix.time == datetime(2014, 12, 31, 3, 7, 19, tzinfo=UTC)
    assert decoder.next_fix() is None
    last = decoder.flush()
    assert last is not None
    assert last.time == datetime(2014, 12, 31, 3, 7, 20, tzinfo=UTC)
    assert decoder.flush() is None


def test_a_fix_merges_gga_gsa_and_rmc_of_its_epoch() -> None:
    (fix,), _ = decode(EPOCH_1)
    assert fix.mode == 3
    assert fix.lat == pytest.approx(-(37 + 47.0873 / 60), abs=1e-9)
    assert fix.lon == pytest.approx(175 + 18.8938 / 60, abs=1e-9)
    assert fix.speed == pytest.approx(0.69 * KNOT)
    assert fix.track == pytest.approx(181.39)
    assert fix.alt_msl == pytest.approx(59.9)
    assert (fix.sats_used, fix.quality) == (8, 1)
    assert (fix.pdop, fix.hdop, fix.vdop) == (1.8, 1.1, 1.5)


def test_western_and_northern_hemispheres_have_their_signs() -> None:
    (fix,), _ = decode(nmea("GNRMC,000941.00,A,4404.13387,N,12118.85628,W,0.029,,100117,,,A"))
    assert fix.lat == pytest.approx(44 + 4.13387 / 60, abs=1e-9)
    assert fix.lon == pytest.approx(-(121 + 18.85628 / 60), abs=1e-9)
    assert fix.track is None  # empty field: the receiver gave nothing


def test_every_talker_is_decoded_not_only_gp() -> None:
    for talker in ("GP", "GN", "GL", "GA", "GB", "BD"):
        (fix,), decoder = decode(
            nmea(f"{talker}RMC,120000.00,A,4807.038,N,01131.000,E,10.0,84.4,230394,,,A")
        )
        assert fix.speed == pytest.approx(10 * KNOT), talker
        assert decoder.stats.sentences_ok == 1


def test_vtg_gives_speed_and_track_for_the_epoch() -> None:
    (fix,), _ = decode(
        nmea("GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,")
        + nmea("GPVTG,54.7,T,34.4,M,5.5,N,10.2,K,A")
    )
    assert fix.track == pytest.approx(54.7)
    assert fix.speed == pytest.approx(5.5 * KNOT)


def test_an_invalid_rmc_is_no_fix_without_position() -> None:
    (fix,), _ = decode(
        nmea("GPGGA,120317,4221.4394,N,01321.9948,E,0,00,,,M,,M,,")
        + nmea("GPRMC,120317,V,4221.4394,N,01321.9948,E,000.0,000.0,150305,001.4,E")
    )
    assert fix.mode == 1
    assert (fix.lat, fix.lon, fix.speed) == (None, None, None)
    assert fix.quality == 0


def test_untimed_sentences_before_the_first_timed_one_make_their_own_fix() -> None:
    fixes, _ = decode(
        nmea("GPGSA,A,2,05,12,30,,,,,,,,,,17.0,17.0,0.0")
        + nmea("GPRMC,095304.802,A,2712.6520,S,15303.1397,E,0.00,133.96,080407,,,A")
    )
    assert [(f.time is None, f.mode) for f in fixes] == [(True, 2), (False, 2)]


def test_gsa_mode_2_without_altitude_is_a_2d_fix() -> None:
    (fix,), _ = decode(
        nmea("GPRMC,095304.802,A,2712.6520,S,15303.1397,E,0.00,133.96,080407,,,A")
        + nmea("GPGSA,A,2,05,12,30,,,,,,,,,,17.0,17.0,0.0")
    )
    assert fix.mode == 2
    assert fix.alt_msl is None
    assert fix.vdop is None  # 0.0 is a placeholder, not a DOP


def test_fractional_seconds_are_kept() -> None:
    (fix,), _ = decode(
        nmea("GPRMC,132820.60,A,4134.49821229,N,09345.03351845,W,3.252,92.308,180320,11.5985,E,D")
    )
    assert fix.time == datetime(2020, 3, 18, 13, 28, 20, 600000, tzinfo=UTC)
    assert fix.lat == pytest.approx(41.574970205, abs=1e-9)


# -- dates ---------------------------------------------------------------------------------------


def test_zda_gives_the_date_with_a_four_digit_year() -> None:
    (fix,), _ = decode(
        nmea("GPGGA,194050.00,4221.8237733,N,07101.9411707,W,1,08,3.3,10.835,M,-33.320,M,,")
        + nmea("GPZDA,194050.00,07,09,2018,00,00")
    )
    assert fix.time == datetime(2018, 9, 7, 19, 40, 50, tzinfo=UTC)


def test_without_any_date_a_fix_has_no_time() -> None:
    (fix,), _ = decode(nmea("GPGGA,194050.00,4221.82377,N,07101.94117,W,1,08,3.3,10.8,M,-33.3,M,,"))
    assert fix.time is None
    assert fix.mode == 3


def test_a_gga_only_receiver_keeps_the_last_date_and_rolls_over_at_midnight() -> None:
    fixes, _ = decode(
        nmea("GPRMC,235959.00,A,4807.038,N,01131.000,E,0.0,0.0,311224,,,A")
        + nmea("GPGGA,000000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    )
    assert [f.time for f in fixes] == [
        datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC),
    ]


# -- speed when the receiver gives none ----------------------------------------------------------


def test_a_gga_only_receiver_gets_a_speed_from_successive_positions() -> None:
    # One minute of latitude northwards (about 1855 m at 48 N) in 10 s.
    fixes, _ = decode(
        nmea("GPRMC,120000.00,A,4800.000,N,01100.000,E,,,010124,,,A")
        + nmea("GPGGA,120010.00,4801.000,N,01100.000,E,1,08,0.9,545.4,M,46.9,M,,")
    )
    assert fixes[0].speed is None
    meridian_arc = 6_371_000 * math.radians(1 / 60)  # spherical estimate, within 0.5 %
    assert fixes[1].speed == pytest.approx(meridian_arc / 10, rel=5e-3)


# -- bad input is counted, never raised ----------------------------------------------------------


def test_a_truncated_sentence_is_rejected_and_counted() -> None:
    fixes, decoder = decode(EPOCH_1 + b"$GNRMC,001053.00,A,4404.14083,N,12118.85886,W,0.\r\n")
    assert len(fixes) == 1
    assert decoder.stats.rejected_by_reason["truncated"] == 1
    assert decoder.stats.sentences_ok == 3


def test_a_bad_checksum_sentence_is_not_used() -> None:
    bad = nmea("GPRMC,030719.000,A,3747.0873,S,17518.8938,E,99.0,181.39,311214,,,A")
    bad = bad.replace(b"99.0", b"98.0")  # corrupted on the wire, checksum unchanged
    fixes, decoder = decode(EPOCH_1 + bad)
    assert fixes[0].speed == pytest.approx(0.69 * KNOT)
    assert decoder.stats.rejected_by_reason["bad_checksum"] == 1


def test_a_malformed_field_rejects_only_its_sentence() -> None:
    fixes, decoder = decode(
        nmea("GPGGA,030719.000,37x7.0873,S,17518.8938,E,1,08,1.1,59.9,M,23.7,M,,0000")
        + nmea("GPRMC,030719.000,A,3747.0873,S,17518.8938,E,0.69,181.39,311214,,,A")
    )
    assert decoder.stats.rejected_by_reason["bad_field"] == 1
    assert fixes[0].lat == pytest.approx(-(37 + 47.0873 / 60), abs=1e-9)
    assert fixes[0].alt_msl is None  # the GGA's altitude went with it


def test_proprietary_and_unknown_sentences_are_ignored_and_counted_by_type() -> None:
    fixes, decoder = decode(
        nmea("PUBX,00,081350.00,4717.113210,N,00833.915187,E,546.589,G3,2.1,2.0,0.007")
        + nmea("PMTK001,314,3")
        + nmea("GPHDT,274.07,T")
        + EPOCH_1
    )
    assert len(fixes) == 1
    assert decoder.stats.ignored == 3
    assert decoder.stats.ignored_by_type == {"PUBX": 1, "PMTK001": 1, "GPHDT": 1}
    assert decoder.stats.rejected == 0


def test_binary_junk_before_a_sentence_on_the_same_line_is_skipped() -> None:
    junk = bytes(range(128, 256)) + b"\xb5b\x06\x01"
    fixes, decoder = decode(junk + EPOCH_1 + b"\x00\xff garbage\r\n")
    assert len(fixes) == 1
    assert decoder.stats.sentences_ok == 3
    assert decoder.stats.rejected_by_reason["junk"] == 2


def test_a_line_longer_than_nmea_allows_is_discarded_and_the_buffer_stays_bounded() -> None:
    decoder = NmeaDecoder()
    decoder.receive_data(b"$GPGSV," + b"1," * 10_000)  # no newline, ever growing
    for _ in range(1000):
        decoder.receive_data(b"9," * 50)
        assert decoder.buffered <= MAX_SENTENCE + 2
    decoder.receive_data(b"\r\n" + EPOCH_1)
    assert decoder.stats.rejected_by_reason["overlong"] == 1
    fix = decoder.flush()
    assert fix is not None and fix.mode == 3


def test_binary_noise_without_newlines_is_counted_once_and_bounded() -> None:
    decoder = NmeaDecoder()
    noise = bytes(random.Random(7).randrange(256) for _ in range(20_000)).replace(b"\n", b"")
    noise = noise.replace(b"$", b"").replace(b"!", b"")
    for i in range(0, len(noise), 97):
        decoder.receive_data(noise[i : i + 97])
        assert decoder.buffered <= MAX_SENTENCE + 2
    decoder.receive_data(b"\n" + EPOCH_1)
    assert decoder.stats.rejected_by_reason == {"junk": 1}
    assert decoder.flush() is not None


def test_the_decoder_keeps_a_bounded_number_of_undrained_fixes() -> None:
    decoder = NmeaDecoder()
    for second in range(MAX_PENDING_FIXES + 11):
        hhmmss = f"12{second // 60:02d}{second % 60:02d}"
        decoder.receive_data(nmea(f"GPRMC,{hhmmss},A,4807.038,N,01131.000,E,1.0,2.0,230394,,,A"))
    first = decoder.flush()
    assert decoder.stats.fixes == MAX_PENDING_FIXES + 11
    assert decoder.stats.fixes_dropped == 11
    assert first is not None and first.time is not None
    assert first.time.minute * 60 + first.time.second == 11  # the oldest were dropped


# -- chunking and lines --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ublox-8.log", "hemi.log", "haicom-305N.log"])
def test_any_chunking_of_a_capture_gives_the_same_fixes(name: str) -> None:
    data = capture_bytes(name)
    whole, _ = decode(data)
    assert whole
    bytewise, _ = decode(*(data[i : i + 1] for i in range(len(data))))
    rng = random.Random(name)
    cuts = sorted(rng.sample(range(1, len(data)), 200))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    chunked, _ = decode(*pieces)
    by_line = NmeaDecoder()
    for line in data.splitlines():
        by_line.receive_line(line)
    lines = []
    fix = by_line.flush()
    while fix is not None:
        lines.append(fix)
        fix = by_line.next_fix()
    assert bytewise == whole
    assert chunked == whole
    assert lines == whole


def test_receive_line_accepts_text() -> None:
    decoder = NmeaDecoder()
    for line in EPOCH_1.decode().splitlines():
        decoder.receive_line(line)
    fix = decoder.flush()
    assert fix is not None and fix.mode == 3


# -- JSON ----------------------------------------------------------------------------------------


def test_json_has_the_documented_keys_and_leaves_out_what_the_receiver_did_not_give() -> None:
    (fix,), _ = decode(EPOCH_1)
    out = fix.to_json_dict()
    assert out["time"] == "2014-12-31T03:07:19.000Z"
    assert {"time", "lat", "lon", "speed", "track", "mode", "sats", "hdop"} <= set(out)
    (no_fix,), _ = decode(nmea("GPGGA,120317,4221.4394,N,01321.9948,E,0,00,,,M,,M,,"))
    assert set(no_fix.to_json_dict()) == {"mode", "sats", "quality"}


def test_gns_gives_the_fix_of_receivers_that_send_no_gga() -> None:
    """Some receivers (a Trimble/Ericsson GRU04) send ZDA + GNS + VTG + GLL, no GGA/RMC."""
    fixes, decoder = decode(
        nmea("GNZDA,213712.000,12,02,2026,,")
        + nmea("GNGNS,213712.000,4111.59903,N,11156.54809,W,AANN,13,0.93,01482.5,-016.5,,")
        + nmea("GNZDA,213713.000,12,02,2026,,")
        + nmea("GNGNS,213713.000,,,,,NNNN,00,,,,,")
    )
    assert decoder.stats.sentences_ok == 4
    first, second = fixes
    assert first.mode == 3
    assert first.lat == pytest.approx(41 + 11.59903 / 60, abs=1e-9)
    assert first.lon == pytest.approx(-(111 + 56.54809 / 60), abs=1e-9)
    assert (first.alt_msl, first.sats_used, first.hdop) == (1482.5, 13, 0.93)
    assert second.mode == 1 and second.lat is None
