"""bus-FMS / J1939 decoding and encoding, sans-IO: CAN id and bytes in, SPN values out.

The parameter groups, bit positions and scales live in `busfleet.dbc` beside this module (our
own DBC, written from the FMS-Standard table). Decoding reads that DBC once into a table keyed
by PGN and extracts the raw bits itself: J1939 is all Intel byte order and unsigned, so a shift
and a mask per signal is enough, and the raw value is what the in-band "not available" and
"error" rules need anyway (cantools would scale 0xFFFF speed to 255.996 km/h). cantools itself
is not imported here: importing it pulls python-can and asyncio into `protocols`; the tests use
it as the oracle that our DBC means what this module decodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from types import MappingProxyType

from protocols.errors import J1939Error
from protocols.j1939.tp import (
    PGN_DM1,
    PGN_TP_CM,
    PGN_TP_DT,
    PGN_VI,
    BamReassembler,
    Dm1,
    Dtc,
    Lamps,
    Vin,
    encode_dm1,
    encode_vin,
    parse_dm1,
    parse_vin,
)

__all__ = [
    "PGN_DM1",
    "PGN_VI",
    "DecoderStats",
    "Dm1",
    "Dtc",
    "J1939Decoder",
    "Lamps",
    "Message",
    "Signals",
    "Vin",
    "decode_frame",
    "encode",
    "encode_dm1",
    "encode_telltales",
    "encode_vin",
    "make_id",
    "messages",
    "split_id",
    "td_datetime",
    "td_values",
]

PGN_EEC1 = 0xF004
PGN_EEC2 = 0xF003
PGN_CCVS1 = 0xFEF1
PGN_ET1 = 0xFEEE
PGN_LFE1 = 0xFEF2
PGN_DD1 = 0xFEFC
PGN_VDHR = 0xFEC1
PGN_HOURS = 0xFEE5
PGN_LFC1 = 0xFEE9
PGN_AMB = 0xFEF5
PGN_VEP1 = 0xFEF7
PGN_TCO1 = 0xFE6C
PGN_TD = 0xFEE6
PGN_DC1 = 0xFE4E
PGN_DC2 = 0xFDA5
PGN_FMS1 = 0xFD7D

_NO_ERRORS: frozenset[int] = frozenset()
_NO_TELLTALES: Mapping[int, int] = MappingProxyType({})


def split_id(can_id: int) -> tuple[int, int, int]:
    """(priority, pgn, sa) of a 29-bit id; for PDU1 (PF < 240) the destination is zeroed."""
    pgn = can_id >> 8 & 0x3FFFF
    if pgn >> 8 & 0xFF < 240:
        pgn &= 0x3FF00
    return can_id >> 26 & 7, pgn, can_id & 0xFF


def make_id(pgn: int, sa: int, priority: int = 6, da: int = 0xFF) -> int:
    """29-bit id for `pgn` sent by `sa`; PDU1 groups carry the destination `da` in PS."""
    if not (0 <= pgn <= 0x3FFFF and 0 <= sa <= 0xFF and 0 <= priority <= 7 and 0 <= da <= 0xFF):
        raise ValueError(f"bad J1939 id fields pgn={pgn:#x} sa={sa} prio={priority} da={da}")
    if pgn >> 8 & 0xFF < 240:
        pgn = pgn & 0x3FF00 | da
    return priority << 26 | pgn << 8 | sa


# --- the table, read from our DBC -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One signal of a message: where its raw bits are and what they mean."""

    name: str
    spn: int | None  # None for fields that are not SPNs (tell-tale slots, DM1 internals)
    start: int
    length: int
    scale: float | int
    offset: float | int
    unit: str

    @property
    def mask(self) -> int:
        return (1 << self.length) - 1

    @property
    def valid_max(self) -> int:
        """Largest raw value that is a measurement (J1939-71 ranges)."""
        if self.length >= 8:
            return (0xFB << (self.length - 8)) - 1  # 0xFA, 0xFAFF, 0xFAFFFFFF
        if self.length == 1:
            return 1
        return self.mask - 2  # 2-bit: 0..1, 4-bit: 0..13

    @property
    def error_range(self) -> tuple[int, int]:
        """Raw values that mean "error" (inclusive)."""
        if self.length >= 8:
            return 0xFE << (self.length - 8), (0xFF << (self.length - 8)) - 1
        if self.length == 1:
            return 2, 1  # empty
        return self.mask - 1, self.mask - 1


@dataclass(frozen=True, slots=True)
class Message:
    """A parameter group of the DBC."""

    name: str
    pgn: int
    priority: int
    fields: tuple[Field, ...]

    def field_for(self, spn: int) -> Field:
        for f in self.fields:
            if f.spn == spn:
                return f
        raise KeyError(spn)


_BO = re.compile(r"^BO_\s+(\d+)\s+(\w+)\s*:\s*(\d+)\s+\w+")
_SG = re.compile(
    r"^\s+SG_\s+(\w+)\s*:\s*(\d+)\|(\d+)@([01])([+-])\s*\(([^,]+),([^)]+)\)"
    r"\s*\[[^]]*\]\s*\"([^\"]*)\""
)
_SPN_NAME = re.compile(r"^SPN(\d+)_")


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def parse_dbc(text: str) -> dict[int, Message]:
    """Read the BO_/SG_ lines of a J1939 DBC (Intel, unsigned signals only) into a PGN table."""
    out: dict[int, Message] = {}
    current: tuple[str, int, int, list[Field]] | None = None

    def close() -> None:
        if current is not None:
            name, pgn, prio, fields = current
            out[pgn] = Message(name, pgn, prio, tuple(fields))

    for line in text.splitlines():
        if bo := _BO.match(line):
            close()
            priority, pgn, _ = split_id(int(bo[1]) & 0x1FFFFFFF)
            current = (bo[2], pgn, priority, [])
        elif sg := _SG.match(line):
            if current is None or sg[4] != "1" or sg[5] != "+":
                raise ValueError(f"unsupported DBC signal line: {line!r}")
            spn = _SPN_NAME.match(sg[1])
            current[3].append(
                Field(
                    name=sg[1],
                    spn=int(spn[1]) if spn else None,
                    start=int(sg[2]),
                    length=int(sg[3]),
                    scale=_number(sg[6]),
                    offset=_number(sg[7]),
                    unit=sg[8],
                )
            )
        elif line.strip() == "":
            close()
            current = None
    close()
    return out


@cache
def messages() -> Mapping[int, Message]:
    """The bus-FMS table of `busfleet.dbc`, keyed by PGN."""
    return parse_dbc(files("protocols.j1939").joinpath("busfleet.dbc").read_text(encoding="ascii"))


# --- decoded results ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signals:
    """One decoded message: SPN -> physical value; n/a and error values are left out."""

    t: float
    pgn: int
    sa: int
    name: str
    spn: dict[int, float | int]
    errors: frozenset[int] = _NO_ERRORS  # SPNs that carried the in-band "error" value
    # FMS1 only: tell-tale number (block*15 + position) -> 0 off, 1 red, 2 yellow, 3 info
    telltales: Mapping[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class DecoderStats:
    """Counters of a decoder; frames == decoded + unknown_pgn + malformed + transport."""

    frames: int = 0
    decoded: int = 0  # frames that produced a result (for TP: the last packet)
    unknown_pgn: int = 0  # PGNs we do not read (and connection-mode transport)
    malformed: int = 0  # bad id, length or transport content
    transport: int = 0  # TP.BAM frames taken in, transfer not finished yet
    bam_completed: int = 0
    bam_aborted: int = 0


# (spn, shift, mask, valid_max, error_lo, error_hi, scale, offset) per field: a flat tuple keeps
# the per-frame loop free of attribute look-ups.
_Plan = tuple[tuple[int, int, int, int, int, int, float | int, float | int], ...]


@cache
def _plans() -> dict[int, tuple[str, _Plan]]:
    plans: dict[int, tuple[str, _Plan]] = {}
    for pgn, msg in messages().items():
        if pgn in (PGN_DM1, PGN_FMS1):
            continue
        plan = tuple(
            (f.spn, f.start, f.mask, f.valid_max, *f.error_range, f.scale, f.offset)
            for f in msg.fields
            if f.spn is not None
        )
        plans[pgn] = (msg.name, plan)
    return plans


def _decode_plan(name: str, plan: _Plan, pgn: int, sa: int, data: bytes, t: float) -> Signals:
    word = int.from_bytes(data, "little")
    values: dict[int, float | int] = {}
    errors: set[int] | None = None
    for spn, shift, mask, vmax, elo, ehi, scale, offset in plan:
        raw = word >> shift & mask
        if raw <= vmax:
            values[spn] = raw * scale + offset
        elif elo <= raw <= ehi:
            if errors is None:
                errors = set()
            errors.add(spn)
    errs = frozenset(errors) if errors else _NO_ERRORS
    return Signals(t, pgn, sa, name, values, errs, _NO_TELLTALES)


def _decode_fms1(sa: int, data: bytes, t: float) -> Signals:
    word = int.from_bytes(data, "little")
    block = word & 0xF
    states: dict[int, int] = {}
    if block <= 4:
        base = block * 15
        for pos in range(1, 16):
            state = word >> (4 * pos) & 7
            if state <= 3:  # 4..6 reserved, 7 not available
                states[base + pos] = state
    return Signals(t, PGN_FMS1, sa, "FMS1", {}, _NO_ERRORS, states)


def decode_frame(can_id: int, data: bytes, t: float) -> Signals:
    """Strict decode of one single-frame bus-FMS message; raise J1939Error if not possible."""
    if not 0 <= can_id <= 0x1FFFFFFF:
        raise J1939Error(f"CAN id {can_id:#x} is not a 29-bit id")
    if len(data) != 8:
        raise J1939Error(f"J1939 frame with {len(data)} bytes")
    _, pgn, sa = split_id(can_id)
    if pgn == PGN_FMS1:
        return _decode_fms1(sa, data, t)
    entry = _plans().get(pgn)
    if entry is None:
        raise J1939Error(f"PGN {pgn:#06x} is not a bus-FMS signal message")
    return _decode_plan(entry[0], entry[1], pgn, sa, data, t)


class J1939Decoder:
    """Decodes frames from a bus: never raises for what the bus sends, counts it instead.

    Keeps the state of TP.BAM transfers, so feed it every frame of one bus in order.
    """

    def __init__(self, bam_timeout: float = 0.75) -> None:
        self.stats = DecoderStats()
        self._plans = _plans()
        self._bam = BamReassembler(timeout=bam_timeout)
        self._last_sweep = float("-inf")

    def decode(self, can_id: int, data: bytes, t: float) -> list[Signals | Dm1 | Vin]:
        """Results of one frame: usually one Signals, [] if not understood (and counted)."""
        st = self.stats
        st.frames += 1
        if not 0 <= can_id <= 0x1FFFFFFF or len(data) != 8:
            st.malformed += 1
            return []
        pgn = can_id >> 8 & 0x3FFFF
        if pgn >> 8 & 0xFF < 240:
            pgn &= 0x3FF00
        sa = can_id & 0xFF
        entry = self._plans.get(pgn)
        if entry is not None:
            st.decoded += 1
            return [_decode_plan(entry[0], entry[1], pgn, sa, data, t)]
        if pgn in (PGN_TP_CM, PGN_TP_DT):
            return self._transport(pgn, can_id >> 8 & 0xFF, sa, data, t)
        if pgn == PGN_FMS1:
            st.decoded += 1
            return [_decode_fms1(sa, data, t)]
        if pgn in (PGN_DM1, PGN_VI):
            return self._multi(pgn, sa, data, t)
        st.unknown_pgn += 1
        return []

    def expire(self, t: float) -> int:
        """Abort transfers that have been idle too long at time `t`; return how many."""
        n = self._bam.expire(t)
        self.stats.bam_aborted = self._bam.aborted
        return n

    def _multi(self, pgn: int, sa: int, payload: bytes, t: float) -> list[Signals | Dm1 | Vin]:
        try:
            result = parse_dm1(payload, t, sa) if pgn == PGN_DM1 else parse_vin(payload, t, sa)
        except J1939Error:
            self.stats.malformed += 1
            return []
        self.stats.decoded += 1
        return [result]

    def _transport(
        self, pgn: int, da: int, sa: int, data: bytes, t: float
    ) -> list[Signals | Dm1 | Vin]:
        st = self.stats
        if da != 0xFF:
            st.unknown_pgn += 1  # connection mode (RTS/CTS) is addressed to someone else
            return []
        bam = self._bam
        if t - self._last_sweep > 1.0:
            self._last_sweep = t
            bam.expire(t)
        done: tuple[int, bytes] | None = None
        try:
            if pgn == PGN_TP_CM:
                bam.connection(sa, data, t)
            else:
                done = bam.data(sa, data, t)
        except J1939Error:
            st.malformed += 1
            return []
        finally:
            st.bam_completed = bam.completed
            st.bam_aborted = bam.aborted
        if done is None:
            st.transport += 1
            return []
        inner_pgn, payload = done
        if inner_pgn in (PGN_DM1, PGN_VI):
            return self._multi(inner_pgn, sa, payload, t)
        st.unknown_pgn += 1
        return []


# --- encoding (simulator, tests) --------------------------------------------------------------


def encode(
    pgn: int, values: Mapping[int, float | int], sa: int = 0, *, errors: Iterable[int] = ()
) -> tuple[int, bytes]:
    """One frame of `pgn` with physical `values` by SPN; SPNs not given are "not available".

    SPNs in `errors` carry the in-band error value. Raise ValueError for an unknown PGN or
    SPN, or a value outside the signal's valid range.
    """
    msg = messages().get(pgn)
    if msg is None or pgn in (PGN_DM1, PGN_FMS1):
        raise ValueError(f"encode() handles the single-frame signal PGNs, not {pgn:#06x}")
    word = (1 << 64) - 1  # unused bits and absent signals are all ones
    errors = set(errors)
    bad = set(values) | errors
    for f in msg.fields:
        if f.spn is None:
            continue
        if f.spn in errors:
            raw = f.error_range[0]
        elif f.spn in values:
            raw = round((values[f.spn] - f.offset) / f.scale)
            if not 0 <= raw <= f.valid_max:
                raise ValueError(f"SPN {f.spn} value {values[f.spn]} outside valid range")
        else:
            continue
        bad.discard(f.spn)
        word &= ~(f.mask << f.start)
        word |= raw << f.start
    if bad:
        raise ValueError(f"SPNs {sorted(bad)} are not in {msg.name}")
    return make_id(pgn, sa, msg.priority), word.to_bytes(8, "little")


def encode_telltales(states: Mapping[int, int], sa: int = 0) -> list[tuple[int, bytes]]:
    """FMS1 frames for tell-tale number -> state (0 off, 1 red, 2 yellow, 3 info, 7 n/a)."""
    blocks: dict[int, int] = {}
    for number, state in states.items():
        block, pos = divmod(number, 15)
        if pos == 0:  # numbers run 1..15 in block 0, 16..30 in block 1, ...
            block, pos = block - 1, 15
        if not 0 <= block <= 4 or not 0 <= state <= 7:
            raise ValueError(f"tell-tale {number} state {state} out of range")
        word = blocks.get(block, ((1 << 64) - 1) & ~0xF | block)
        word &= ~(7 << 4 * pos)
        blocks[block] = word | state << 4 * pos
    ident = make_id(PGN_FMS1, sa, messages()[PGN_FMS1].priority)
    return [(ident, blocks[b].to_bytes(8, "little")) for b in sorted(blocks)]


# --- time/date --------------------------------------------------------------------------------


def td_values(when: datetime) -> dict[int, float | int]:
    """TD (PGN 0xFEE6) SPN values for an aware datetime, sent as UTC."""
    u = when.astimezone(UTC)
    return {
        959: u.second + u.microsecond // 250_000 * 0.25,
        960: u.minute,
        961: u.hour,
        963: u.month,
        962: u.day,  # whole days: raw 4*day, which the 0.25 d/bit rule reads back as `day`
        964: u.year,
        1601: 0,
        1602: 0,
    }


def td_datetime(sig: Signals) -> datetime | None:
    """The UTC time of a decoded TD message, or None if any field is missing or invalid."""
    v = sig.spn
    try:
        raw_day = round(v[962] * 4)
        base = datetime(
            int(v[964]), int(v[963]), (raw_day + 3) // 4, int(v[961]), int(v[960]), tzinfo=UTC
        )
    except (KeyError, ValueError):
        return None
    return base + timedelta(seconds=float(v[959]))
