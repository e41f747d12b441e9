"""Encoding a GNSS epoch as NMEA 0183 sentences: RMC, GGA, VTG, GSA and GSV.

Pure: time, position and sky are arguments, the output is bytes. What a receiver would say
that we do not know (which satellites, their elevation and azimuth) is synthesised
deterministically from the satellite count and the time. Positions carry six decimals of
minutes (about 2 mm), so a decoder recovers them within 1e-7 degrees.

Mistakes by the caller (a latitude of 91, a comma inside a field) are `ValueError`: that is
us breaking the protocol, not a device (see `protocols.errors`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = [
    "KNOTS_PER_MPS",
    "checksum",
    "encode_epoch",
    "format_lat",
    "format_lon",
    "format_time",
    "sentence",
    "sky",
]

KNOTS_PER_MPS = 3600.0 / 1852.0  # one knot is one nautical mile (1852 m) per hour
_MINUTE_DECIMALS = 6
# GPS PRNs the synthetic sky draws from, in the order they are "used" for the fix.
_PRN_POOL = (2, 5, 6, 7, 9, 12, 13, 15, 17, 19, 20, 24, 25, 28, 29, 30)
_MAX_GSA_SATS = 12  # GSA has twelve satellite slots
_EXTRA_IN_VIEW = 3  # satellites tracked but not used, as a real receiver reports


def checksum(body: str) -> str:
    """XOR of the characters between '$' and '*', as two upper-case hex digits."""
    cs = 0
    for ch in body.encode("ascii"):
        cs ^= ch
    return f"{cs:02X}"


def sentence(talker: str, type: str, fields: Sequence[str]) -> bytes:
    """One complete sentence: `$` talker type `,` fields `*` checksum CR LF."""
    if len(talker) != 2 or not talker.isalnum() or not type.isalnum():
        raise ValueError(f"bad talker or sentence type: {talker!r} {type!r}")
    for f in fields:
        if any(c in f for c in ",*$\r\n") or not f.isascii():
            raise ValueError(f"field {f!r} contains a character NMEA reserves")
    body = ",".join([talker + type, *fields])
    out = f"${body}*{checksum(body)}\r\n"
    if len(out) > 82:
        raise ValueError(f"sentence longer than NMEA's 82 characters: {out!r}")
    return out.encode("ascii")


def _ddmm(value: float, degree_digits: int) -> str:
    # Round once, in integer millionths of a minute, so that 59.9999999' carries into degrees.
    scale = 10**_MINUTE_DECIMALS
    q = round(abs(value) * 60 * scale)
    deg, rest = divmod(q, 60 * scale)
    minutes, frac = divmod(rest, scale)
    return f"{deg:0{degree_digits}d}{minutes:02d}.{frac:0{_MINUTE_DECIMALS}d}"


def format_lat(lat: float) -> tuple[str, str]:
    """Latitude as ('ddmm.mmmmmm', 'N' or 'S')."""
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"latitude out of range: {lat}")
    return _ddmm(lat, 2), "S" if lat < 0 else "N"


def format_lon(lon: float) -> tuple[str, str]:
    """Longitude as ('dddmm.mmmmmm', 'E' or 'W')."""
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"longitude out of range: {lon}")
    return _ddmm(lon, 3), "W" if lon < 0 else "E"


def format_time(t: float) -> tuple[str, str]:
    """Unix time as NMEA ('hhmmss.ss', 'ddmmyy'), UTC, rounded to the centisecond."""
    cs = round(t * 100)
    dt = datetime.fromtimestamp(cs // 100, tz=UTC)
    return f"{dt:%H%M%S}.{cs % 100:02d}", f"{dt:%d%m%y}"


def sky(t: float, sats: int) -> list[tuple[int, int, int, int, bool]]:
    """A plausible sky: (prn, elevation deg, azimuth deg, snr dB-Hz, used) per satellite.

    The `sats` used satellites have the best signals; azimuths drift slowly with time as
    real ones do (a satellite crosses the sky in hours).
    """
    used = max(0, min(sats, len(_PRN_POOL)))
    n = min(len(_PRN_POOL), used + _EXTRA_IN_VIEW)
    out = []
    for k, prn in enumerate(_PRN_POOL[:n]):
        elevation = 15 + (prn * 37) % 70 if k < used else 5 + prn % 10
        azimuth = int(prn * 53 + t / 240.0) % 360
        snr = min(50, 25 + elevation // 3) if k < used else 12 + prn % 8
        out.append((prn, elevation, azimuth, snr, k < used))
    return out


def _f(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def encode_epoch(
    t: float,
    lat: float,
    lon: float,
    speed_mps: float,
    track_deg: float,
    alt_m: float,
    sats: int,
    hdop: float,
    talker: str = "GP",
    *,
    valid: bool = True,
    include_sky: bool = True,
    geoid_sep_m: float = 0.0,
) -> list[bytes]:
    """The sentences a receiver emits for one epoch: RMC, GGA, VTG, then GSA and GSV.

    `valid=False` is an epoch without a fix (status V, quality 0, empty position). Receivers
    running above 1 Hz usually send GSA/GSV once a second: pass `include_sky=False` for the
    epochs in between.
    """
    if speed_mps < 0 or not math.isfinite(speed_mps):
        raise ValueError(f"speed must be a non-negative number: {speed_mps}")
    hhmmss, ddmmyy = format_time(t)
    la, ns = format_lat(lat)
    lo, ew = format_lon(lon)
    knots = _f(speed_mps * KNOTS_PER_MPS, 3)
    kmh = _f(speed_mps * 3.6, 3)
    track = _f(track_deg % 360.0, 2)
    if not valid:
        la = ns = lo = ew = knots = kmh = track = ""
    mode = "A" if valid else "N"  # FAA mode indicator: autonomous / not valid
    fix_kind = 1 if not valid or sats < 3 else (2 if sats == 3 else 3)
    out = [
        sentence(talker, "RMC",
                 [hhmmss, "A" if valid else "V", la, ns, lo, ew, knots, track, ddmmyy, "", "",
                  mode]),
        sentence(talker, "GGA",
                 [hhmmss, la, ns, lo, ew, "1" if valid else "0", f"{max(0, sats):02d}",
                  _f(hdop, 2), _f(alt_m, 1) if valid else "", "M", _f(geoid_sep_m, 1), "M",
                  "", ""]),
        sentence(talker, "VTG", [track, "T", "", "M", knots, "N", kmh, "K", mode]),
    ]  # fmt: skip
    if include_sky:
        out.extend(_sky_sentences(t, sats, hdop, fix_kind, talker))
    return out


def _sky_sentences(t: float, sats: int, hdop: float, fix_kind: int, talker: str) -> list[bytes]:
    satellites = sky(t, sats)
    used = [f"{prn:02d}" for prn, *_, is_used in satellites if is_used and fix_kind > 1]
    used = used[:_MAX_GSA_SATS]
    # Vertical precision is typically ~1.5x worse than horizontal; PDOP combines both.
    vdop = hdop * 1.5
    pdop = math.hypot(hdop, vdop)
    gsa = [
        "A", str(fix_kind), *used, *[""] * (_MAX_GSA_SATS - len(used)),
        _f(pdop, 2), _f(hdop, 2), _f(vdop, 2),
    ]  # fmt: skip
    out = [sentence(talker, "GSA", gsa)]
    # GSV lists satellites per constellation; a GN (multi-GNSS) talker reports GPS as GP.
    gsv_talker = "GP" if talker == "GN" else talker
    total = max(1, math.ceil(len(satellites) / 4))
    for i in range(total):
        fields = [str(total), str(i + 1), f"{len(satellites):02d}"]
        for prn, elevation, azimuth, snr, _ in satellites[4 * i : 4 * i + 4]:
            fields += [f"{prn:02d}", f"{elevation:02d}", f"{azimuth:03d}", f"{snr:02d}"]
        out.append(sentence(gsv_talker, "GSV", fields))
    return out
