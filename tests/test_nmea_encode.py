"""NMEA encoding: framing, checksums, field formats, and a round trip through our decoder."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.nmea.decoder import NmeaDecoder
from protocols.nmea.encode import encode_epoch, format_lat, format_lon, sentence

T = datetime(2024, 3, 5, 7, 8, 9, 250_000, tzinfo=UTC).timestamp()
CAIRNS = (-16.920767, 145.779299)


def _split(raw: bytes) -> tuple[str, list[str]]:
    """(address, fields) of a sentence, after checking its framing and checksum by hand."""
    assert raw.startswith(b"$") and raw.endswith(b"\r\n")
    body, _, cs = raw[1:-2].decode("ascii").rpartition("*")
    assert cs == f"{reduce(lambda a, c: a ^ c, body.encode(), 0):02X}"
    address, *fields = body.split(",")
    return address, fields


def _ddmm_to_deg(text: str, hemisphere: str, degree_digits: int) -> float:
    value = int(text[:degree_digits]) + float(text[degree_digits:]) / 60.0
    return -value if hemisphere in "SW" else value


def _epoch(
    *, sats: int = 9, hdop: float = 0.95, valid: bool = True, talker: str = "GP"
) -> dict[str, list[list[str]]]:
    """Encode one epoch at Cairns, 10 m/s on 271.5 deg: fields of each sentence by address."""
    out: dict[str, list[list[str]]] = {}
    for raw in encode_epoch(T, *CAIRNS, 10.0, 271.5, 12.3, sats, hdop, talker, valid=valid):
        address, fields = _split(raw)
        out.setdefault(address, []).append(fields)
    return out


def test_every_sentence_is_framed_and_checksummed() -> None:
    sentences = encode_epoch(T, *CAIRNS, 10.0, 271.5, 12.3, 9, 0.95)
    addresses = [_split(s)[0] for s in sentences]
    assert addresses[:4] == ["GPRMC", "GPGGA", "GPVTG", "GPGSA"]
    assert set(addresses[4:]) == {"GPGSV"}
    assert all(len(s) <= 82 for s in sentences)


def test_rmc_carries_time_date_position_and_speed_in_knots() -> None:
    rmc = _epoch()["GPRMC"][0]
    assert rmc[0] == "070809.25" and rmc[8] == "050324"
    assert rmc[1] == "A"
    assert _ddmm_to_deg(rmc[2], rmc[3], 2) == pytest.approx(CAIRNS[0], abs=1e-7)
    assert _ddmm_to_deg(rmc[4], rmc[5], 3) == pytest.approx(CAIRNS[1], abs=1e-7)
    assert float(rmc[6]) == pytest.approx(10.0 * 3600 / 1852, abs=1e-3)
    assert float(rmc[7]) == pytest.approx(271.5)


def test_gga_vtg_and_gsa_agree_with_the_epoch() -> None:
    e = _epoch(sats=7, hdop=1.2)
    gga, vtg, gsa = e["GPGGA"][0], e["GPVTG"][0], e["GPGSA"][0]
    assert gga[5] == "1" and int(gga[6]) == 7 and float(gga[7]) == pytest.approx(1.2)
    assert float(gga[8]) == pytest.approx(12.3) and gga[9] == "M"
    assert gga[1] == e["GPRMC"][0][2]  # same position text in both
    assert float(vtg[6]) == pytest.approx(36.0, abs=1e-3) and vtg[7] == "K"
    assert gsa[1] == "3"
    assert len([p for p in gsa[2:14] if p]) == 7
    assert float(gsa[15]) == pytest.approx(1.2)


def test_gsv_lists_every_satellite_in_view_four_per_sentence() -> None:
    gsv = _epoch(sats=9)["GPGSV"]
    total = int(gsv[0][0])
    in_view = int(gsv[0][2])
    assert len(gsv) == total == math.ceil(in_view / 4)
    assert [int(g[1]) for g in gsv] == list(range(1, total + 1))
    sats = [g[3 + 4 * k] for g in gsv for k in range((len(g) - 3) // 4)]
    assert len(sats) == in_view >= 9
    assert len(set(sats)) == in_view


def test_an_epoch_without_fix_has_status_v_and_no_position() -> None:
    e = _epoch(valid=False)
    rmc, gga = e["GPRMC"][0], e["GPGGA"][0]
    assert rmc[1] == "V" and rmc[2:6] == ["", "", "", ""]
    assert gga[5] == "0" and gga[1] == ""
    assert e["GPGSA"][0][1] == "1"


def test_a_multi_gnss_talker_keeps_gps_satellites_under_gp() -> None:
    e = _epoch(talker="GN")
    assert {"GNRMC", "GNGGA", "GNVTG", "GNGSA", "GPGSV"} == set(e)


def test_sky_sentences_can_be_left_out_between_whole_seconds() -> None:
    sentences = encode_epoch(T, *CAIRNS, 1.0, 0.0, 0.0, 8, 1.0, include_sky=False)
    assert [_split(s)[0] for s in sentences] == ["GPRMC", "GPGGA", "GPVTG"]


def test_minutes_that_round_up_to_sixty_carry_into_the_degrees() -> None:
    assert format_lat(10.9999999999) == ("1100.000000", "N")
    assert format_lon(-7.99999999999) == ("00800.000000", "W")


def test_positions_out_of_range_are_a_local_error() -> None:
    with pytest.raises(ValueError):
        format_lat(90.5)
    with pytest.raises(ValueError):
        encode_epoch(T, 0.0, 181.0, 0.0, 0.0, 0.0, 8, 1.0)
    with pytest.raises(ValueError):
        encode_epoch(T, 0.0, 0.0, -1.0, 0.0, 0.0, 8, 1.0)


def test_sentence_refuses_fields_that_would_break_the_framing() -> None:
    assert _split(sentence("GP", "TXT", ["01", "01", "02", "hi"])) == (
        "GPTXT",
        ["01", "01", "02", "hi"],
    )
    for bad in ("a,b", "a*b", "$", "x\r\n"):
        with pytest.raises(ValueError):
            sentence("GP", "TXT", [bad])
    with pytest.raises(ValueError):
        sentence("GP", "TXT", ["x" * 80])


@given(st.floats(min_value=-89.9, max_value=89.9), st.floats(min_value=-179.9, max_value=179.9))
def test_latitude_and_longitude_text_round_trips_within_a_microdegree(
    lat: float, lon: float
) -> None:
    assert _ddmm_to_deg(*format_lat(lat), 2) == pytest.approx(lat, abs=1e-6)
    assert _ddmm_to_deg(*format_lon(lon), 3) == pytest.approx(lon, abs=1e-6)


@settings(max_examples=300, deadline=None)
@given(
    # RMC's two-digit year: decoders read 00..68 as 20xx, so stay within 2000..2049.
    t=st.floats(min_value=946_684_800, max_value=2_524_608_000),
    lat=st.floats(min_value=-89.9, max_value=89.9),
    lon=st.floats(min_value=-179.9, max_value=179.9),
    speed=st.floats(min_value=0.5, max_value=60.0),
    track=st.floats(min_value=0.0, max_value=359.99),
    alt=st.floats(min_value=-100.0, max_value=3000.0),
    sats=st.integers(min_value=4, max_value=12),
    hdop=st.floats(min_value=0.5, max_value=9.0),
)
def test_our_decoder_reads_back_what_we_encode(
    t: float,
    lat: float,
    lon: float,
    speed: float,
    track: float,
    alt: float,
    sats: int,
    hdop: float,
) -> None:
    decoder = NmeaDecoder()
    for raw in encode_epoch(t, lat, lon, speed, track, alt, sats, hdop):
        decoder.receive_data(raw)
    fix = decoder.next_fix() or decoder.flush()
    assert fix is not None
    assert fix.mode == 3
    assert fix.lat == pytest.approx(lat, abs=1e-6)
    assert fix.lon == pytest.approx(lon, abs=1e-6)
    assert fix.speed == pytest.approx(speed, abs=1e-3)
    assert fix.track == pytest.approx(round(track, 2) % 360.0, abs=0.006)
    assert fix.time.timestamp() == pytest.approx(t, abs=0.006)
