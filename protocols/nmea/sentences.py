"""Field parsing for the NMEA 0183 sentences the decoder uses: RMC, GGA, VTG, GSA, GLL, ZDA, GSV.

Each `parse_xxx(fields)` takes the fields after the address (talker + type) of a sentence whose
framing and checksum are already checked, and returns a small frozen record in SI units
(degrees, m/s, metres, microseconds since midnight). An empty field means "the receiver gave
nothing" and becomes None; a field that is present but malformed raises `BadField`, so that the
decoder can count and skip the whole sentence instead of using half of it.

Numbers are parsed with `float()`/`int()` on the field strings (no regular expressions) because
this runs for every sentence of a 10 Hz receiver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from protocols.errors import NmeaError

KNOTS_TO_MPS = 1852.0 / 3600.0
KMH_TO_MPS = 1000.0 / 3600.0
DAY_US = 86_400_000_000


class BadField(NmeaError):
    """A sentence with a present but malformed field (the sentence is skipped and counted)."""

    def __init__(self, message: str, *, field: int | None = None) -> None:
        super().__init__(message)
        self.field = field


# -- scalar fields ---------------------------------------------------------------------------


def opt_float(fields: tuple[str, ...], i: int) -> float | None:
    """Field `i` as a finite float, None when empty or absent."""
    if i >= len(fields) or not fields[i]:
        return None
    try:
        value = float(fields[i])
    except ValueError:
        raise BadField(f"field {i} is not a number: {fields[i]!r}", field=i) from None
    if not math.isfinite(value):
        raise BadField(f"field {i} is not finite: {fields[i]!r}", field=i)
    return value


def opt_int(fields: tuple[str, ...], i: int) -> int | None:
    """Field `i` as a non-negative decimal integer, None when empty or absent."""
    if i >= len(fields) or not fields[i]:
        return None
    text = fields[i]
    if not text.isdigit() or not text.isascii():
        raise BadField(f"field {i} is not an integer: {text!r}", field=i)
    return int(text)


def opt_char(fields: tuple[str, ...], i: int) -> str:
    """First character of field `i`, '' when empty or absent."""
    if i >= len(fields) or not fields[i]:
        return ""
    return fields[i][0]


def parse_time(text: str) -> int | None:
    """`hhmmss[.sss]` as microseconds since midnight UTC; None when empty."""
    if not text:
        return None
    head, _, frac = text.partition(".")
    if len(head) != 6 or not head.isdigit() or not head.isascii():
        raise BadField(f"bad time {text!r}")
    if frac and (not frac.isdigit() or not frac.isascii()):
        raise BadField(f"bad time {text!r}")
    hh, mm, ss = int(head[0:2]), int(head[2:4]), int(head[4:6])
    # ss == 60 is a leap second; receivers really send it.
    if hh > 23 or mm > 59 or ss > 60:
        raise BadField(f"bad time {text!r}")
    micros = int((frac + "000000")[:6]) if frac else 0
    return ((hh * 60 + mm) * 60 + ss) * 1_000_000 + micros


def parse_ddmmyy(text: str) -> date | None:
    """RMC's `ddmmyy` date; the century follows gpsd (yy < 69 is 20yy, else 19yy)."""
    if not text:
        return None
    if len(text) != 6 or not text.isdigit() or not text.isascii():
        raise BadField(f"bad date {text!r}")
    dd, mo, yy = int(text[0:2]), int(text[2:4]), int(text[4:6])
    year = 2000 + yy if yy < 69 else 1900 + yy
    try:
        return date(year, mo, dd)
    except ValueError:
        raise BadField(f"bad date {text!r}") from None


def parse_coordinate(text: str, hemisphere: str, *, is_lat: bool) -> float | None:
    """`ddmm.mmmm` / `dddmm.mmmm` plus N/S/E/W as signed decimal degrees; None when empty.

    Degrees and whole minutes are split with integer arithmetic like gpsd does, so that the
    fractional minutes are the only rounding step.
    """
    if not text or not hemisphere:
        return None
    whole, dot, frac = text.partition(".")
    if not dot or not whole.isdigit() or not whole.isascii():
        raise BadField(f"bad coordinate {text!r}")
    if frac and (not frac.isdigit() or not frac.isascii()):
        raise BadField(f"bad coordinate {text!r}")
    raw = int(whole)
    degrees = raw // 100
    minutes = raw - degrees * 100 + (float("0." + frac) if frac else 0.0)
    if minutes >= 60.0:
        raise BadField(f"bad coordinate {text!r}")
    value = degrees + minutes / 60.0
    if is_lat:
        if hemisphere not in ("N", "S") or value > 90.0:
            raise BadField(f"bad latitude {text!r},{hemisphere!r}")
        return -value if hemisphere == "S" else value
    if hemisphere not in ("E", "W") or value > 180.0:
        raise BadField(f"bad longitude {text!r},{hemisphere!r}")
    return -value if hemisphere == "W" else value


def parse_position(fields: tuple[str, ...], i: int) -> tuple[float, float] | None:
    """Latitude/longitude from fields i..i+3; None unless all four are present."""
    if i + 3 >= len(fields):
        return None
    lat = parse_coordinate(fields[i], fields[i + 1], is_lat=True)
    lon = parse_coordinate(fields[i + 2], fields[i + 3], is_lat=False)
    if lat is None or lon is None:
        return None
    return lat, lon


def valid_dop(value: float | None) -> float | None:
    """A DOP, or None for the placeholders receivers use (0.00 Skytraq, 99.x BT-451/JLT)."""
    if value is None or not 0.01 <= value <= 89.99:
        return None
    return value


def _require(fields: tuple[str, ...], n: int, name: str) -> None:
    if len(fields) < n:
        raise BadField(f"{name} has {len(fields)} fields, needs {n}")


# -- sentences -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rmc:
    """Recommended minimum data: time, validity, position, speed, track, date."""

    time: int | None
    valid: bool
    position: tuple[float, float] | None
    speed: float | None  # m/s
    track: float | None
    date: date | None
    faa: str


def parse_rmc(fields: tuple[str, ...]) -> Rmc:
    _require(fields, 9, "RMC")
    knots = opt_float(fields, 6)
    return Rmc(
        time=parse_time(fields[0]),
        valid=fields[1] == "A",
        position=parse_position(fields, 2),
        speed=None if knots is None else knots * KNOTS_TO_MPS,
        track=opt_float(fields, 7),
        date=parse_ddmmyy(fields[8]),
        faa=opt_char(fields, 11),
    )


@dataclass(frozen=True, slots=True)
class Gga:
    """Fix data: time, position, quality, satellites used, HDOP, altitude above MSL."""

    time: int | None
    position: tuple[float, float] | None
    quality: int | None
    sats_used: int | None
    hdop: float | None
    alt_msl: float | None


def parse_gga(fields: tuple[str, ...]) -> Gga:
    _require(fields, 9, "GGA")
    return Gga(
        time=parse_time(fields[0]),
        position=parse_position(fields, 1),
        quality=opt_int(fields, 5),
        sats_used=opt_int(fields, 6),
        hdop=opt_float(fields, 7),
        alt_msl=opt_float(fields, 8),
    )


@dataclass(frozen=True, slots=True)
class Vtg:
    """Track made good and ground speed; `usable` is False for FAA modes E and N."""

    track: float | None
    speed: float | None  # m/s
    usable: bool


def parse_vtg(fields: tuple[str, ...]) -> Vtg:
    _require(fields, 5, "VTG")
    knots = opt_float(fields, 4)
    faa = opt_char(fields, 8)
    return Vtg(
        track=opt_float(fields, 0),
        speed=None if knots is None else knots * KNOTS_TO_MPS,
        usable=faa not in ("E", "N"),
    )


@dataclass(frozen=True, slots=True)
class Gsa:
    """DOPs and active satellites; `mode` is 1 (no fix), 2 or 3, None when absent or odd."""

    mode: int | None
    prns: tuple[int, ...]
    pdop: float | None
    hdop: float | None
    vdop: float | None
    system_id: int | None  # NMEA 4.10 GNSS system id, when the receiver sends it


def parse_gsa(fields: tuple[str, ...]) -> Gsa:
    _require(fields, 17, "GSA")
    mode_text = fields[1]
    mode = int(mode_text) if mode_text in ("1", "2", "3") else None
    # PRN slots run from field 2 up to the three DOPs: 12 slots normally (DOPs in fields
    # 14-16, then an NMEA 4.10 system id), more on a few receivers (Navior-24: 24 slots).
    n = len(fields)
    dops_at = 14 if n <= 18 else n - 3
    system_text = fields[17] if n == 18 else ""
    # SiRF TriG puts a float where the system id goes: that is not a system id.
    has_system = bool(system_text) and "." not in system_text
    prns: list[int] = []
    for i in range(2, dops_at):
        text = fields[i]
        if text:
            if not text.isdigit() or not text.isascii():
                raise BadField(f"bad PRN {text!r}", field=i)
            prns.append(int(text))
    return Gsa(
        mode=mode,
        prns=tuple(prns),
        pdop=opt_float(fields, dops_at),
        hdop=opt_float(fields, dops_at + 1),
        vdop=opt_float(fields, dops_at + 2),
        system_id=opt_int(fields, 17) if has_system else None,
    )


@dataclass(frozen=True, slots=True)
class Gll:
    """Geographic position with time and validity."""

    position: tuple[float, float] | None
    time: int | None
    valid: bool


def parse_gll(fields: tuple[str, ...]) -> Gll:
    _require(fields, 6, "GLL")
    faa = opt_char(fields, 6)
    return Gll(
        position=parse_position(fields, 0),
        time=parse_time(fields[4]),
        valid=fields[5] == "A" and faa != "N",
    )


@dataclass(frozen=True, slots=True)
class Zda:
    """Time and full date; `date` is None when the receiver left it blank."""

    time: int | None
    date: date | None


def parse_zda(fields: tuple[str, ...]) -> Zda:
    _require(fields, 4, "ZDA")
    time = parse_time(fields[0])
    day, month, year = opt_int(fields, 1), opt_int(fields, 2), opt_int(fields, 3)
    if time is None or day is None or month is None or year is None:
        # Some receivers (u-blox Antaris) send blank ZDAs before lock: not an error.
        return Zda(time=None, date=None)
    try:
        when = date(year, month, day)
    except ValueError:
        raise BadField(f"bad ZDA date {fields[1:4]!r}") from None
    return Zda(time=time, date=when)


@dataclass(frozen=True, slots=True)
class Gns:
    """GNS (NMEA 4.0): GGA's fix data with one mode letter per constellation."""

    time: int | None
    position: tuple[float, float] | None
    modes: str  # FAA mode letters, the first one counts (as in gpsd)
    sats_used: int | None
    hdop: float | None
    alt_msl: float | None
    nav_status: str  # NMEA 4.1: S safe, C caution, U unsafe, V not valid


def parse_gns(fields: tuple[str, ...]) -> Gns:
    _require(fields, 12, "GNS")
    return Gns(
        time=parse_time(fields[0]),
        position=parse_position(fields, 1),
        modes=fields[5],
        sats_used=opt_int(fields, 6),
        hdop=opt_float(fields, 7),
        alt_msl=opt_float(fields, 8),
        nav_status=opt_char(fields, 12),
    )


@dataclass(frozen=True, slots=True)
class Gsv:
    """One sentence of a satellites-in-view group."""

    total: int | None
    number: int | None
    in_view: int | None


def parse_gsv(fields: tuple[str, ...]) -> Gsv:
    _require(fields, 3, "GSV")
    return Gsv(total=opt_int(fields, 0), number=opt_int(fields, 1), in_view=opt_int(fields, 2))


def satellite_key(talker: str, prn: int, system_id: int | None) -> int:
    """A number unique across constellations for a used satellite, to count each once.

    GPGSA/GNGSA and GLGSA often list the same satellites twice in one epoch; the talker (or the
    NMEA 4.10 system id) says which constellation a small PRN belongs to, as gpsd maps them.
    """
    if system_id == 2 or (system_id is None and talker == "GL"):
        return 64 + prn if prn <= 64 else prn
    if system_id == 3 or (system_id is None and talker == "GA"):
        return 300 + prn if prn < 100 else prn
    if system_id == 4 or (system_id is None and talker in ("GB", "BD")):
        return 400 + prn if prn < 100 else prn
    if system_id == 5 or (system_id is None and talker in ("GQ", "QZ")):
        return 192 + prn if prn < 100 else prn
    return prn


def earth_distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance in metres on the WGS84 ellipsoid (Vincenty's inverse formula), as gpsd uses.

    Falls back to the spherical law when the iteration does not converge (near-antipodal
    points, which never occur between two consecutive fixes).
    """
    a = 6378137.0
    f = 1 / 298.257223563
    b = a * (1 - f)
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    lam = big_l = math.radians(lon2 - lon1)
    u1 = math.atan((1 - f) * math.tan(phi1))
    u2 = math.atan((1 - f) * math.tan(phi2))
    sin_u1, cos_u1 = math.sin(u1), math.cos(u1)
    sin_u2, cos_u2 = math.sin(u2), math.cos(u2)
    for _ in range(100):
        sin_lam, cos_lam = math.sin(lam), math.cos(lam)
        sin_sigma = math.hypot(cos_u2 * sin_lam, cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_lam)
        if sin_sigma == 0.0:
            return 0.0
        cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_lam
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = cos_u1 * cos_u2 * sin_lam / sin_sigma
        cos_sq_alpha = 1 - sin_alpha * sin_alpha
        cos_2sigma_m = cos_sigma - 2 * sin_u1 * sin_u2 / cos_sq_alpha if cos_sq_alpha else 0.0
        c = f / 16 * cos_sq_alpha * (4 + f * (4 - 3 * cos_sq_alpha))
        lam_prev = lam
        lam = big_l + (1 - c) * f * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sigma_m + c * cos_sigma * (-1 + 2 * cos_2sigma_m**2))
        )
        if abs(lam - lam_prev) < 1e-12:
            break
    else:
        return 6371008.8 * math.acos(
            max(
                -1.0,
                min(
                    1.0,
                    math.sin(phi1) * math.sin(phi2)
                    + math.cos(phi1) * math.cos(phi2) * math.cos(big_l),
                ),
            )
        )
    u_sq = cos_sq_alpha * (a * a - b * b) / (b * b)
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    delta_sigma = (
        big_b
        * sin_sigma
        * (
            cos_2sigma_m
            + big_b
            / 4
            * (
                cos_sigma * (-1 + 2 * cos_2sigma_m**2)
                - big_b / 6 * cos_2sigma_m * (-3 + 4 * sin_sigma**2) * (-3 + 4 * cos_2sigma_m**2)
            )
        )
    )
    return b * big_a * (sigma - delta_sigma)
