"""A compact binary codec for telemetry batches, beside JSON; and the MQTT size of a publish.

JSON (`protocols.codec`) stays the readable format for debugging; a bus on cellular sends this
one. Both travel on the same topic: `decode_batch` tells them apart by the first byte.

Wire layout, version 2::

    byte 0    0x02 = COMPACT_VERSION. A JSON text starts with '{', '[', '"', '-', a digit,
              t/f/n or whitespace, never with a control byte, so the two cannot be confused.
    byte 1    flags: bit 0 = backfill; bits 1-7 are reserved and must be zero.
    byte 2    n, the length of the bus id (1..32), then the n ASCII bytes of the bus id.
    then      the record count, LEB128 varint, at most MAX_RECORDS (10,000).
    then      the records as one bit stream, most significant bit first, zero-padded to a
              byte; the padding must be zero and nothing may follow it.

Each record, in this order; what the record's shape marks absent is skipped::

    1 bit     0 = quiet: the shape is the previous record's and every "quiet" channel below
              (seq, t, mode, hdop, sats, coolant_c, fuel_pct) is exactly its prediction and
              is not written. 1 = loud: everything is written.
    1 bit     loud records only: 0 = same shape as the previous record, 1 = fourteen shape
              bits follow: pos, pos.speed, pos.track, pos.hdop, pos.sats, pos.estimated,
              veh, veh.speed_kmh, veh.rpm, veh.coolant_c, veh.fuel_pct, veh.odometer_m,
              veh.doors_open is not None, veh.doors_open. Before the first record the shape is
              "everything present, not estimated, doors closed".
    numbers   seq, t, then if pos: lat, lon, mode, speed, track, hdop, sats,
              then if veh: speed_kmh, rpm, coolant_c, fuel_pct, odometer_m.

Every number is an integer count of its quantum (table below), coded as the residual from a
prediction out of the same channel's earlier values in the batch; the first value of a
channel in a batch is coded whole. Residuals are zigzag-mapped (0, -1, 1, -2 ... -> 0, 1, 2,
3 ...) and written as an adaptive Rice code: m >> k as that many zeros and a one, then the k
low bits of m, where k follows the running mean of the channel's recent values (as in
LOCO-I / JPEG-LS), so a still channel costs one bit and a noisy one what its noise needs.
A quotient of `_ESCAPE` or more is written as `_ESCAPE` zeros and m in the universal code,
which also carries the first values: m's bit length as an Exp-Golomb code of order
`_LEN_K`, then m's bits below its top one. Track residuals are taken the short way round
(heading north flips between 0 and 360 degrees).

    channel      quantum        prediction                  round trip
    seq          1              previous + 1                exact
    t            1 ms           previous + previous step    +-0.5 ms
    lat, lon     1e-7 degree    linear extrapolation        +-5e-8 degree, about 5 mm
    mode, sats   1              previous                    exact
    speed        0.01 m/s       linear extrapolation        +-0.005 m/s
    track        0.01 degree    previous, wrapped           +-0.005 degree
    hdop         0.01           previous                    +-0.005
    speed_kmh    1/256 km/h     linear extrapolation        J1939 resolution (CCVS1)
    rpm          0.125 rpm      previous                    J1939 resolution (EEC1)
    coolant_c    1 degree C     previous                    J1939 resolution (ET1)
    fuel_pct     0.4 %          previous                    J1939 resolution (DD1)
    odometer_m   5 m            linear extrapolation        J1939 resolution (VDHR)

Round trips are within half a quantum (plus float rounding for huge values); `estimated`,
`mode`, `sats`, `doors_open` and None are exact, and values that came from the J1939 decoder
are already whole quanta. Numbers of any finite size are coded, up to `_MAX_BITS` bits.
No DEFLATE on top (measured by bench/wire_bytes.py on a simulated hour of a 1 Hz drive):
raw DEFLATE makes every batch of this bit stream larger, and a preset dictionary saves
under 1 byte per record at 10 records (mostly the bus id) and nothing from 30 on.

The decoded batch is the same schema (v = 1) as the JSON one: the version byte selects the
wire encoding, not a different message; it is validated against the schema's bounds as the
JSON one is, so a number the codec can carry but the schema refuses is a CodecError.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import msgspec

from protocols import compact_decode as _d
from protocols.codec import MAX_PAYLOAD, decode
from protocols.errors import CodecError
from protocols.schemas import SCHEMA_VERSION, TelemetryBatch, TelemetryRecord
from protocols.topics import valid_bus_id

__all__ = [
    "COMPACT_VERSION",
    "MAX_RECORDS",
    "NATIVE",
    "decode_batch",
    "encode_batch",
    "mqtt_publish_size",
]

log = logging.getLogger("busfleet.protocols.compact")

# The format's constants and channel table live with the decoder (see its docstring).
COMPACT_VERSION = _d.COMPACT_VERSION
MAX_RECORDS = _d.MAX_RECORDS  # per batch; a larger declared count is rejected before decoding
_FLAG_BACKFILL = _d.FLAG_BACKFILL
_ESCAPE = _d.ESCAPE
_LEN_K = _d.LEN_K
_MAX_BITS = _d.MAX_BITS
_RESET = _d.RESET
_SHAPE_BITS = _d.SHAPE_BITS
_POS, _P_EST, _VEH, _V_DOORS, _V_OPEN = _d.POS, _d.P_EST, _d.VEH, _d.V_DOORS, _d.V_OPEN
_ALL_PRESENT = _d.ALL_PRESENT


@dataclass(frozen=True, slots=True)
class _Spec:
    """One numeric channel: its quantum, its predictor and when it is present."""

    need: int  # shape bits that must all be set for the channel to be present
    num: int  # q = round(x * num / den), x = q * den / num
    den: int = 1
    linear: bool = False  # extrapolate the last step, else repeat the previous value
    step: int = 0  # assumed first step (linear) or constant increment (previous)
    wrap: int = 0  # angle channels: quanta in a full turn
    quiet: bool = False  # one of the channels a quiet record leaves out
    exact: bool = False  # an int field, carried as is
    # Decode as q * scale, as protocols.j1939 does (raw * 0.4 is not always raw * 2 / 5), so
    # that its values come back bit for bit.
    scale: float | None = None

    def quantise(self, x: float) -> int:
        """The nearest count of quanta; ValueError for NaN, OverflowError for infinities."""
        if self.exact:
            if not isinstance(x, int):
                raise ValueError(f"{x!r} is not an integer")
            return x
        try:
            y = x * self.num / self.den
        except OverflowError:  # an int beyond float range
            y = math.inf
        if abs(y) < 2.0**40:  # the float product is exact to far below one quantum here
            return round(y)
        return round(Fraction(x) * self.num / self.den)

    def value(self, q: int) -> float | int:
        if self.exact:
            return q
        if self.scale is not None and abs(q) < 2**53:
            return q * self.scale
        # Integer true division rounds correctly (1234 / 100 is 12.34, not 12.340000000000002).
        return q * self.den / self.num


_SPECS = tuple(
    _Spec(need, num, den, linear, step, wrap, quiet, exact, scale)
    for need, num, den, linear, step, wrap, quiet, exact, scale in _d.CHANNELS
)


class _Channel:
    """The coding state of one channel within one batch; the same in encoder and decoder."""

    __slots__ = ("a", "last", "n", "prev", "spec")

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.last: int | None = None
        self.prev: int | None = None
        self.a = 0  # sum of recent mapped residuals, over
        self.n = 1  # their count (from 1, so that k starts at 0)

    def predict(self) -> int | None:
        if self.last is None:
            return None
        if self.spec.linear and self.prev is not None:
            return 2 * self.last - self.prev
        return self.last + self.spec.step

    def k(self) -> int:
        # The smallest k with n * 2**k >= a: Rice's choice for a geometric source of mean a/n.
        return (max((self.a + self.n - 1) // self.n, 1) - 1).bit_length()

    def update(self, q: int, m: int | None) -> None:
        self.prev, self.last = self.last, q
        if m is not None:
            self.a += m
            self.n += 1
            if self.n >= _RESET:
                self.a >>= 1
                self.n >>= 1


def _residual(spec: _Spec, pred: int, q: int) -> int:
    """q - pred; for angles the short way round, with q outside one turn still exact."""
    d, w = q - pred, spec.wrap
    if not w or not 0 <= pred < w:
        return d
    if 0 <= q < w:
        return (d + w // 2) % w - w // 2
    # A track of 360.0 or -3: residuals beyond half a turn say "unwrapped".
    return d + w // 2 if d >= 0 else d - w // 2


def _apply(spec: _Spec, pred: int, r: int) -> int:
    """The inverse of `_residual`."""
    half = spec.wrap // 2
    if not half or not 0 <= pred < spec.wrap:
        return pred + r
    if -half <= r < half:
        return (pred + r) % spec.wrap
    return pred + r - half if r >= half else pred + r + half


# -- encoding ---------------------------------------------------------------------------------


def _universal(m: int) -> str:
    n = m.bit_length()
    if n > _MAX_BITS:
        raise ValueError(f"a value of {n} bits is beyond the compact codec's {_MAX_BITS}")
    head = format(n + (1 << _LEN_K), "b")
    return "0" * (len(head) - 1 - _LEN_K) + head + format(m, "b")[1:]


def _rice(ch: _Channel, q: int) -> str:
    pred = ch.predict()
    if pred is None:
        ch.update(q, None)
        return _universal(2 * q if q >= 0 else -2 * q - 1)
    r = _residual(ch.spec, pred, q)
    m = 2 * r if r >= 0 else -2 * r - 1
    k = ch.k()
    ch.update(q, m)
    if m >> k >= _ESCAPE:
        return "0" * _ESCAPE + _universal(m)
    return "0" * (m >> k) + "1" + (format(m & ((1 << k) - 1), f"0{k}b") if k else "")


def _fields(rec: TelemetryRecord) -> tuple[int, list[float | int | None]]:
    """The record's shape and its raw values in channel order (None where absent)."""
    shape, p, v = 0, rec.pos, rec.veh
    values: list[float | int | None] = [rec.seq, rec.t]
    if p is None:
        values += [None] * 7
    else:
        values += [p.lat, p.lon, p.mode, p.speed, p.track, p.hdop, p.sats]
        shape |= _POS | (_P_EST if p.estimated else 0)
    if v is None:
        values += [None] * 5
    else:
        values += [v.speed_kmh, v.rpm, v.coolant_c, v.fuel_pct, v.odometer_m]
        shape |= _VEH
        if v.doors_open is not None:
            shape |= _V_DOORS | (_V_OPEN if v.doors_open else 0)
    for spec, x in zip(_SPECS, values, strict=True):
        if x is not None:
            shape |= spec.need
    return shape, values


def encode_batch(batch: TelemetryBatch) -> bytes:
    """The compact payload of a batch (see the module docstring).

    Raises ValueError for a batch that this codec cannot carry (an invalid bus id, more than
    MAX_RECORDS records, a NaN or infinity, schema version other than 1, a payload over
    MAX_PAYLOAD): that is our mistake, not a peer's, so it is not a CodecError.
    """
    if batch.v != SCHEMA_VERSION:
        raise ValueError(f"the compact codec carries schema version {SCHEMA_VERSION} only")
    if not valid_bus_id(batch.bus):
        raise ValueError(f"invalid bus id {batch.bus!r}")
    if len(batch.records) > MAX_RECORDS:
        raise ValueError(f"{len(batch.records)} records in one batch; at most {MAX_RECORDS}")
    bus = batch.bus.encode("ascii")
    head = bytes([COMPACT_VERSION, _FLAG_BACKFILL if batch.backfill else 0, len(bus)]) + bus
    count = len(batch.records)
    while count > 0x7F:  # LEB128
        head += bytes([count & 0x7F | 0x80])
        count >>= 7
    head += bytes([count])
    channels = [_Channel(s) for s in _SPECS]
    parts: list[str] = []
    last_shape = _ALL_PRESENT
    for rec in batch.records:
        shape, values = _fields(rec)
        try:
            qs = [None if x is None else s.quantise(x) for s, x in zip(_SPECS, values, strict=True)]
        except OverflowError as exc:
            raise ValueError(f"record {rec.seq}: {exc}") from exc
        quiet = shape == last_shape and all(
            c.predict() == q
            for c, q in zip(channels, qs, strict=True)
            if c.spec.quiet and q is not None
        )
        if not quiet:
            parts.append("10" if shape == last_shape else "11" + format(shape, f"0{_SHAPE_BITS}b"))
        else:
            parts.append("0")
        last_shape = shape
        for c, q in zip(channels, qs, strict=True):
            if q is None:
                continue
            if quiet and c.spec.quiet:
                c.update(q, None)
            else:
                parts.append(_rice(c, q))
    bits = "".join(parts)
    bits += "0" * (-len(bits) % 8)
    out = head + (int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b"")
    if len(out) > MAX_PAYLOAD:
        raise ValueError(f"compact batch of {len(out)} bytes exceeds {MAX_PAYLOAD}")
    return out


# -- decoding ---------------------------------------------------------------------------------


def _fail(message: str) -> CodecError:
    return CodecError(f"compact batch: {message}", schema="TelemetryBatch")


_Decoder = Callable[[bytes, Callable[[str], bool]], dict[str, object]]
NATIVE_MODULE = "protocols._compact_native"


def _decoder() -> tuple[_Decoder, bool]:
    """The mypyc-compiled decoder if it was built from protocols/compact_decode.py as it is
    now (`python -m busfleet.compact_build`), else that module in pure Python."""
    try:
        native = importlib.import_module(NATIVE_MODULE)
    except ImportError:
        return _d.decode_compact, False
    digest = hashlib.sha256(Path(_d.__file__).read_bytes()).hexdigest()
    if getattr(native, "SOURCE_DIGEST", None) != digest:
        log.warning("%s is stale (built from another compact_decode.py): not used", NATIVE_MODULE)
        return _d.decode_compact, False
    return cast(_Decoder, native.decode_compact), True


_decode_compact, NATIVE = _decoder()  # NATIVE: the compiled decoder is in use


def decode_batch(data: bytes) -> TelemetryBatch:
    """A telemetry payload in either format: compact if it starts with COMPACT_VERSION, else
    JSON. Raises CodecError, and only CodecError, for anything that is not a valid batch."""
    if not data or data[0] != COMPACT_VERSION:
        return decode(TelemetryBatch, data)
    if len(data) > MAX_PAYLOAD:
        raise _fail(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD}")
    try:
        batch = _decode_compact(data, valid_bus_id)
    except (ValueError, OverflowError, IndexError) as exc:
        raise _fail(str(exc)) from exc
    return _validated(batch)


def _validated(batch: dict[str, object]) -> TelemetryBatch:
    """The decoded batch checked against the schema's bounds, as the JSON path checks them.

    The codec carries any finite number (up to `_MAX_BITS`), and a Struct built in code is not
    validated: without this a compact batch could bring central the seq of 2^63 or the time
    of 1e300 that the JSON path refuses. The decoder builds plain dicts and lists, and this one
    conversion makes (and checks) the Structs: central's ingest takes every record through
    here, so each is built once.
    """
    try:
        return msgspec.convert(batch, TelemetryBatch)
    except msgspec.ValidationError as exc:
        raise _fail(str(exc)) from exc


# -- MQTT -------------------------------------------------------------------------------------


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def mqtt_publish_size(
    topic: str, payload_len: int, qos: int = 1, mqtt5: bool = True, *, topic_alias: bool = False
) -> int:
    """Bytes of one MQTT PUBLISH packet on the wire, carrying `payload_len` bytes of payload.

    Counted: the fixed header (1 byte of type and flags, the remaining length as a 1-4 byte
    varint), the topic name (2-byte length and its UTF-8 bytes), the packet identifier
    (2 bytes, QoS 1 and 2 only), MQTT 5's property length (1 byte, no properties; with
    `topic_alias` an empty topic and a 3-byte Topic Alias property instead, as on every
    publish after the first on a connection), and the payload.
    Not counted: the PUBACK coming back (4 bytes at QoS 1), TLS records (about 22 bytes
    each), TCP/IP headers (40+ bytes per segment) and keepalive pings.
    """
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2: {qos}")
    if topic_alias and not mqtt5:
        raise ValueError("topic aliases are an MQTT 5 feature")
    if payload_len < 0:
        raise ValueError(f"negative payload length {payload_len}")
    props = 3 if topic_alias else 0
    remaining = 2 + (0 if topic_alias else len(topic.encode("utf-8"))) + payload_len
    remaining += (2 if qos else 0) + (_varint_len(props) + props if mqtt5 else 0)
    if remaining > 268_435_455:
        raise ValueError(f"a PUBLISH of {remaining} bytes is beyond MQTT's maximum packet size")
    return 1 + _varint_len(remaining) + remaining
