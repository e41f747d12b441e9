"""The compact codec's decoder (protocols/compact.py has the format), compiled when it can be.

Central decodes every record a bus sends, and this was most of its CPU (bench/central_ingest.py).
So this module is written to be compiled by mypyc (`python -m busfleet.compact_build`, run by
`./run setup`) into `protocols._compact_native`, and is used as it is, in pure Python, where
that was not built: `protocols.compact` picks the compiled one only when it was built from
this very source (a digest of it is compiled in), so a stale build is never used.

For that it imports nothing but the standard library: the bus id check comes in as an
argument, and errors are ValueError (a CodecError in the making: `compact.decode_batch`
wraps them). Its channel table is the one source of the format's channels; `compact` builds
the encoder's specs from it. Typed for mypyc: a `Final` constant is inlined, an `int` local
is a machine word while it fits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = ["CHANNELS", "decode_compact"]

COMPACT_VERSION: Final = 2
MAX_RECORDS: Final = 10_000  # per batch; a larger declared count is rejected before decoding
FLAG_BACKFILL: Final = 0x01
ESCAPE: Final = 8  # a Rice quotient this large switches to the universal code
LEN_K: Final = 4  # first values are 20..45 bits long: an order-4 length code is shorter than EG0
# Longest number in the universal code: a float near 1.8e308 at 1/1000 is about 1030 bits, and
# linear prediction can quadruple a residual. Bounds what a hostile length field can ask for.
MAX_BITS: Final = 1100
MAX_ZEROS: Final = 7  # of a valid length code: (MAX_BITS + (1 << LEN_K)).bit_length() - 1 - LEN_K
RESET: Final = 16  # the Rice statistics halve every this many values, to follow the drive
INT_MIN: Final = -(2**63)  # what msgspec's int (and so the JSON path) takes
INT_MAX: Final = 2**64 - 1

# Shape bits, most significant first, in the order of compact.py's docstring.
SHAPE_BITS: Final = 14
POS: Final = 1 << 13
P_SPEED: Final = 1 << 12
P_TRACK: Final = 1 << 11
P_HDOP: Final = 1 << 10
P_SATS: Final = 1 << 9
P_EST: Final = 1 << 8
VEH: Final = 1 << 7
V_KMH: Final = 1 << 6
V_RPM: Final = 1 << 5
V_COOL: Final = 1 << 4
V_FUEL: Final = 1 << 3
V_ODO: Final = 1 << 2
V_DOORS: Final = 1 << 1
V_OPEN: Final = 1
# Before the first record: pos and veh with every field, not estimated, doors closed.
ALL_PRESENT: Final = ((1 << SHAPE_BITS) - 1) & ~P_EST & ~V_OPEN

# One numeric channel, in wire order: (need, num, den, linear, step, wrap, quiet, exact, scale).
# need: shape bits that must all be set for it to be present; q = round(x * num / den);
# linear: extrapolate the last step, else repeat the previous value; step: the assumed first
# step (linear) or constant increment (previous); wrap: quanta in a full turn (angles); quiet:
# one of the channels a quiet record leaves out; exact: an int field, carried as is; scale:
# decode as q * scale, as protocols.j1939 does (raw * 0.4 is not always raw * 2 / 5).
Channel = tuple[int, int, int, bool, int, int, bool, bool, float | None]
CHANNELS: Final[tuple[Channel, ...]] = (
    (0, 1, 1, False, 1, 0, True, True, None),  # seq
    (0, 1000, 1, True, 1000, 0, True, False, None),  # t
    (POS, 10**7, 1, True, 0, 0, False, False, None),  # lat
    (POS, 10**7, 1, True, 0, 0, False, False, None),  # lon
    (POS, 1, 1, False, 0, 0, True, True, None),  # mode
    (POS | P_SPEED, 100, 1, True, 0, 0, False, False, None),  # speed
    (POS | P_TRACK, 100, 1, False, 0, 36_000, False, False, None),  # track
    (POS | P_HDOP, 100, 1, False, 0, 0, True, False, None),  # hdop
    (POS | P_SATS, 1, 1, False, 0, 0, True, True, None),  # sats
    (VEH | V_KMH, 256, 1, True, 0, 0, False, False, None),  # speed_kmh
    (VEH | V_RPM, 8, 1, False, 0, 0, False, False, None),  # rpm
    (VEH | V_COOL, 1, 1, False, 0, 0, True, False, None),  # coolant_c
    (VEH | V_FUEL, 5, 2, False, 0, 0, True, False, 0.4),  # fuel_pct
    (VEH | V_ODO, 1, 5, True, 0, 0, False, False, None),  # odometer_m
)
N_CHANNELS: Final = 14

# Per shape (14 bits: at most 16,384), the channels it carries, each with its index.
_ACTIVE: dict[int, tuple[Channel, ...]] = {}


def _active(shape: int) -> tuple[Channel, ...]:
    out = _ACTIVE.get(shape)
    if out is None:
        out = _ACTIVE[shape] = tuple(
            (i, c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8])
            for i, c in enumerate(CHANNELS)
            if shape & c[0] == c[0]
        )
    return out


def decode_compact(data: bytes, valid_bus: Callable[[str], bool]) -> dict[str, object]:
    """A compact payload (its first byte checked by the caller) as the batch's plain dict;
    ValueError (or OverflowError, IndexError) for anything that is not a valid batch."""
    if len(data) < 4:
        raise ValueError("truncated header")
    flags, n_bus = data[1], data[2]
    if flags & ~FLAG_BACKFILL:
        raise ValueError(f"reserved flags {flags:#04x}")
    bus = data[3 : 3 + n_bus].decode("ascii")  # UnicodeDecodeError is a ValueError
    if len(bus) != n_bus or not valid_bus(bus):
        raise ValueError(f"invalid bus id {bus!r}")
    count, pos, shift = 0, 3 + n_bus, 0
    while True:  # LEB128, three bytes at most for counts up to MAX_RECORDS
        if pos >= len(data) or shift > 14:
            raise ValueError("bad record count")
        byte = data[pos]
        count |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            break
    if count > MAX_RECORDS:
        raise ValueError(f"{count} records declared; at most {MAX_RECORDS}")
    # The record bit stream as a '0'/'1' string: str.find and int(s, 2) do the work in C. A
    # leading 1 keeps the leading zeros that int.from_bytes would drop.
    bits = bin(int.from_bytes(b"\x01" + data[pos:], "big"))[3:]
    records, end = _decode_records(bits, count)
    rest = bits[end:]
    if len(rest) >= 8 or "1" in rest:
        raise ValueError("data after the last record")
    return {"bus": bus, "records": records, "backfill": bool(flags & FLAG_BACKFILL)}


def _universal_at(bits: str, pos: int) -> tuple[int, int]:
    """A number in the universal code at `pos`; returns it and the position after it."""
    j = bits.find("1", pos, pos + MAX_ZEROS + 1)
    if j < 0:
        if pos + MAX_ZEROS + 1 > len(bits):
            raise ValueError("truncated")
        raise ValueError("number too long")
    z = j - pos
    pos, end = j + 1, j + 1 + z + LEN_K
    if end > len(bits):
        raise ValueError("truncated")
    n = ((1 << (z + LEN_K)) | int(bits[pos:end], 2)) - (1 << LEN_K)
    if n > MAX_BITS:
        raise ValueError("number too long")
    if n <= 1:
        return n, end  # 0 is coded as length 0, 1 as length 1 with no bits below its top
    pos, end = end, end + n - 1
    if end > len(bits):
        raise ValueError("truncated")
    return (1 << (n - 1)) | int(bits[pos:end], 2), end


def _decode_records(bits: str, count: int) -> tuple[list[dict[str, object]], int]:
    """The records of the bit stream as dicts of the schema's fields, and the position after.

    The same coding state as compact.py's `_Channel` (last, prev, the Rice statistics a and
    n), kept in lists indexed by channel; its `_rice` and `_Channel` are the specification.
    """
    nbits = len(bits)
    pos = 0
    last: list[int | None] = [None] * N_CHANNELS
    prev: list[int | None] = [None] * N_CHANNELS
    acc = [0] * N_CHANNELS
    cnt = [1] * N_CHANNELS
    shape = ALL_PRESENT
    active = _active(shape)
    records: list[dict[str, object]] = []
    for _ in range(count):
        if pos >= nbits:
            raise ValueError("truncated")
        quiet = bits[pos] == "0"
        pos += 1
        if not quiet:
            if pos >= nbits:
                raise ValueError("truncated")
            pos += 1
            if bits[pos - 1] == "1":
                if pos + SHAPE_BITS > nbits:
                    raise ValueError("truncated")
                shape = int(bits[pos : pos + SHAPE_BITS], 2)
                active = _active(shape)
                pos += SHAPE_BITS
        v: list[float | int | None] = [None] * N_CHANNELS
        for i, num, den, linear, step, wrap, spec_quiet, exact, scale in active:
            q_last = last[i]
            pred: int | None
            if q_last is None:
                pred = None
            else:
                q_prev = prev[i]
                pred = 2 * q_last - q_prev if linear and q_prev is not None else q_last + step
            q: int
            m: int
            if quiet and spec_quiet:
                if pred is None:  # a quiet record before the channel's first value
                    raise ValueError("quiet record without a prediction")
                q = pred
            elif pred is None:  # a channel's first value: `_universal_at`, inlined
                j = bits.find("1", pos, pos + MAX_ZEROS + 1)
                end = 2 * j - pos + 1 + LEN_K  # past the length field
                n = MAX_BITS + 1  # anything unusual: `_universal_at` raises the right error
                if j >= 0 and end <= nbits:
                    n = ((1 << (j - pos + LEN_K)) | int(bits[j + 1 : end], 2)) - (1 << LEN_K)
                if n > MAX_BITS or end + n - 1 > nbits:
                    m, pos = _universal_at(bits, pos)
                elif n > 1:
                    m, pos = (1 << (n - 1)) | int(bits[end : end + n - 1], 2), end + n - 1
                else:
                    m, pos = n, end
                q = (m >> 1) ^ -(m & 1)
            else:
                a, n = acc[i], cnt[i]
                k = (max((a + n - 1) // n, 1) - 1).bit_length()
                j = bits.find("1", pos, pos + ESCAPE)
                if j < 0:
                    if pos + ESCAPE > nbits:
                        raise ValueError("truncated")
                    m, pos = _universal_at(bits, pos + ESCAPE)
                elif k:
                    quotient = j - pos
                    pos = j + 1 + k
                    if pos > nbits:
                        raise ValueError("truncated")
                    m = (quotient << k) | int(bits[pos - k : pos], 2)
                else:
                    m, pos = j - pos, j + 1
                r = (m >> 1) ^ -(m & 1)
                half = wrap // 2
                if not half or not 0 <= pred < wrap:  # compact.py's `_apply`
                    q = pred + r
                elif -half <= r < half:
                    q = (pred + r) % wrap
                else:
                    q = pred + r - half if r >= half else pred + r + half
                a += m
                n += 1
                if n >= RESET:
                    a >>= 1
                    n >>= 1
                acc[i], cnt[i] = a, n
            prev[i], last[i] = q_last, q
            if exact:
                v[i] = q
            elif scale is not None and abs(q) < 2**53:
                v[i] = q * scale
            else:
                v[i] = q * den / num  # integer true division rounds right: 1234 / 100 = 12.34
        records.append(_record(shape, v))
    return records, pos


def _record(shape: int, v: list[float | int | None]) -> dict[str, object]:
    # Keys in the schema's field order, so that validation reports the same first error as
    # the JSON path. Exact channels (seq, mode, sats) hold ints, the others floats; seq and t
    # are always set, lat, lon and mode whenever pos is.
    seq, t, lat, lon, mode, speed, track, hdop, sats, kmh, rpm, coolant, fuel, odo = v
    for name, x in (("seq", seq), ("mode", mode), ("sats", sats)):
        if x is not None and not INT_MIN <= x <= INT_MAX:
            raise ValueError(f"{name} {x} out of range")
    out: dict[str, object] = {"seq": seq, "t": t}
    if shape & POS:
        assert lat is not None and lon is not None
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError(f"position {lat}, {lon} out of range")
        out["pos"] = {
            "lat": lat, "lon": lon, "speed": speed, "track": track, "mode": mode, "hdop": hdop,
            "sats": sats, "estimated": bool(shape & P_EST),
        }  # fmt: skip
    if shape & VEH:
        out["veh"] = {
            "speed_kmh": kmh, "rpm": rpm,
            "doors_open": bool(shape & V_OPEN) if shape & V_DOORS else None,
            "coolant_c": coolant, "fuel_pct": fuel, "odometer_m": odo,
        }  # fmt: skip
    return out
