"""J1939 multi-packet data: TP.BAM reassembly and segmentation, DM1 and VIN payloads.

Sans-IO: the reassembler is fed frames with their time and returns finished payloads; it never
reads a bus or a clock. Only broadcast transfers (BAM) are reassembled: the bus-FMS gateway is
read-only and never opens a connection (RTS/CTS), so those frames are ignored by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from protocols.errors import J1939Error

PGN_TP_CM = 0xEC00  # transport protocol, connection management (announce / abort)
PGN_TP_DT = 0xEB00  # transport protocol, data transfer (sequence number + 7 bytes)
PGN_DM1 = 0xFECA
PGN_VI = 0xFEEC

TP_BAM = 32
TP_ABORT = 255
BAM_MAX_SIZE = 1785  # 255 packets x 7 bytes
# J1939-21 T1: a BAM receiver gives up 750 ms after the last packet.
BAM_TIMEOUT_S = 0.75
# Senders space BAM packets 50..200 ms; we send faster only on simulated buses.
_TP_PRIORITY = 7
_SINGLE_PRIORITY = 6


@dataclass(frozen=True, slots=True)
class Dtc:
    """One diagnostic trouble code: suspect parameter, failure mode, occurrence count."""

    spn: int
    fmi: int
    occurrence: int | None = None  # 0..126; None when the ECU sends 127 ("not available")


@dataclass(frozen=True, slots=True)
class Lamps:
    """DM1 lamp states: True on, False off, None not available."""

    mil: bool | None = None
    red_stop: bool | None = None
    amber_warning: bool | None = None
    protect: bool | None = None


@dataclass(frozen=True, slots=True)
class Dm1:
    """Active diagnostic trouble codes of one ECU (source address `sa`)."""

    t: float
    sa: int
    lamps: Lamps
    dtcs: tuple[Dtc, ...]
    pgn: int = PGN_DM1
    name: str = "DM1"


@dataclass(frozen=True, slots=True)
class Vin:
    """Vehicle identification number, as the vehicle sends it (PGN 0xFEEC)."""

    t: float
    sa: int
    text: str
    pgn: int = PGN_VI
    name: str = "VI"


def _lamp(bits: int) -> bool | None:
    return None if bits > 1 else bits == 1


def parse_dm1(payload: bytes, t: float, sa: int) -> Dm1:
    """Decode a DM1 payload (2 lamp bytes, then 4 bytes per DTC); raise J1939Error if short."""
    if len(payload) < 6:
        raise J1939Error(f"DM1 payload of {len(payload)} bytes, need at least 6")
    b = payload[0]
    lamps = Lamps(
        mil=_lamp(b >> 6 & 3),
        red_stop=_lamp(b >> 4 & 3),
        amber_warning=_lamp(b >> 2 & 3),
        protect=_lamp(b & 3),
    )
    dtcs: list[Dtc] = []
    # A trailing partial DTC (payload not 2 + 4n) is ignored: it cannot name a fault.
    for i in range(2, len(payload) - 3, 4):
        d = payload[i : i + 4]
        spn = d[0] | d[1] << 8 | (d[2] >> 5) << 16
        fmi = d[2] & 0x1F
        oc = d[3] & 0x7F
        if spn == 0 and fmi == 0:
            continue  # "no active DTC" placeholder sent by healthy ECUs
        if d == b"\xff\xff\xff\xff":
            continue  # padding
        dtcs.append(Dtc(spn, fmi, None if oc == 0x7F else oc))
    return Dm1(t=t, sa=sa, lamps=lamps, dtcs=tuple(dtcs))


def _lamp_bits(v: bool | None) -> int:
    return 3 if v is None else int(v)


def encode_dm1_payload(lamps: Lamps, dtcs: tuple[Dtc, ...] | list[Dtc]) -> bytes:
    """DM1 payload; with no DTC it carries the all-zero placeholder, padded to 8 bytes."""
    b0 = (
        _lamp_bits(lamps.mil) << 6
        | _lamp_bits(lamps.red_stop) << 4
        | _lamp_bits(lamps.amber_warning) << 2
        | _lamp_bits(lamps.protect)
    )
    out = bytearray([b0, 0xFF])
    for dtc in dtcs or [Dtc(0, 0, 0)]:
        if not 0 <= dtc.spn < 1 << 19 or not 0 <= dtc.fmi < 32:
            raise ValueError(f"DTC out of range: {dtc}")
        oc = 0x7F if dtc.occurrence is None else min(max(dtc.occurrence, 0), 126)
        out += bytes([dtc.spn & 0xFF, dtc.spn >> 8 & 0xFF, (dtc.spn >> 16) << 5 | dtc.fmi, oc])
    if len(out) < 8:
        out += b"\xff" * (8 - len(out))
    return bytes(out)


def parse_vin(payload: bytes, t: float, sa: int) -> Vin:
    """Decode a VIN payload: ASCII, `*`-terminated; raise J1939Error if not printable."""
    raw = payload.split(b"*", 1)[0].rstrip(b"\x00\xff ")
    if not raw or not all(0x20 < c < 0x7F for c in raw):
        raise J1939Error(f"VIN payload is not printable ASCII: {payload!r}")
    return Vin(t=t, sa=sa, text=raw.decode("ascii"))


def encode_vin_payload(vin: str) -> bytes:
    """VIN as sent on the bus: ASCII followed by the `*` delimiter."""
    return vin.encode("ascii") + b"*"


def bam_frames(pgn: int, payload: bytes, sa: int) -> list[tuple[int, bytes]]:
    """Segment `payload` into a TP.BAM announce and its data packets, as (can_id, data)."""
    size = len(payload)
    if not 9 <= size <= BAM_MAX_SIZE:
        raise ValueError(f"BAM carries 9..{BAM_MAX_SIZE} bytes, not {size}")
    packets = (size + 6) // 7
    prio = _TP_PRIORITY << 26
    cm_id = prio | PGN_TP_CM << 8 | 0xFF00 | sa
    dt_id = prio | PGN_TP_DT << 8 | 0xFF00 | sa
    announce = bytes(
        [TP_BAM, size & 0xFF, size >> 8, packets, 0xFF, pgn & 0xFF, pgn >> 8 & 0xFF, pgn >> 16]
    )
    frames = [(cm_id, announce)]
    for seq in range(1, packets + 1):
        chunk = payload[(seq - 1) * 7 : seq * 7]
        frames.append((dt_id, bytes([seq]) + chunk + b"\xff" * (7 - len(chunk))))
    return frames


def encode_dm1(lamps: Lamps, dtcs: Iterable[Dtc], sa: int = 0) -> list[tuple[int, bytes]]:
    """DM1 as a single frame (zero or one DTC) or as a TP.BAM transfer (more)."""
    payload = encode_dm1_payload(lamps, list(dtcs))
    if len(payload) <= 8:
        return [(_SINGLE_PRIORITY << 26 | PGN_DM1 << 8 | sa, payload)]
    return bam_frames(PGN_DM1, payload, sa)


def encode_vin(vin: str, sa: int = 0) -> list[tuple[int, bytes]]:
    """The VIN (PGN 0xFEEC) by TP.BAM, or one frame if it is that short."""
    payload = encode_vin_payload(vin)
    if len(payload) <= 8:
        return [(_SINGLE_PRIORITY << 26 | PGN_VI << 8 | sa, payload.ljust(8, b"\xff"))]
    return bam_frames(PGN_VI, payload, sa)


@dataclass(slots=True)
class _Session:
    pgn: int
    size: int
    packets: int
    t_last: float
    chunks: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class BamReassembler:
    """Reassembles broadcast transfers, one at a time per source address.

    Packets are accepted in any order (some gateways reorder); a transfer is aborted when
    the same source announces a new one, sends an abort, a packet has an impossible sequence
    number, or no packet came for `timeout` seconds.
    """

    timeout: float = BAM_TIMEOUT_S
    completed: int = 0
    aborted: int = 0
    _sessions: dict[int, _Session] = field(default_factory=dict)

    @property
    def open_transfers(self) -> int:
        """Number of transfers announced and not yet finished."""
        return len(self._sessions)

    def connection(self, sa: int, data: bytes, t: float) -> None:
        """Feed a TP.CM frame sent to the global address; raise J1939Error if malformed."""
        if len(data) != 8:
            raise J1939Error(f"TP.CM with {len(data)} bytes")
        control = data[0]
        if control == TP_ABORT:
            if self._sessions.pop(sa, None) is not None:
                self.aborted += 1
            return
        if control != TP_BAM:
            raise J1939Error(f"TP.CM control byte {control} is not BAM")
        size = data[1] | data[2] << 8
        packets = data[3]
        pgn = data[5] | data[6] << 8 | data[7] << 16
        if self._sessions.pop(sa, None) is not None:
            self.aborted += 1  # a new announce replaces an unfinished transfer
        if not 9 <= size <= BAM_MAX_SIZE or packets != (size + 6) // 7 or pgn > 0x3FFFF:
            raise J1939Error(f"BAM announce size={size} packets={packets} pgn={pgn:#x}")
        self._sessions[sa] = _Session(pgn, size, packets, t)

    def data(self, sa: int, data: bytes, t: float) -> tuple[int, bytes] | None:
        """Feed a TP.DT frame; return (pgn, payload) when the transfer is complete.

        Raise J1939Error for a packet that fits no open transfer.
        """
        s = self._sessions.get(sa)
        if s is None:
            raise J1939Error(f"TP.DT from {sa:#04x} without an announce")
        if t - s.t_last > self.timeout or len(data) != 8 or not 1 <= data[0] <= s.packets:
            del self._sessions[sa]
            self.aborted += 1
            raise J1939Error(f"TP.DT from {sa:#04x} late, short or out of range: aborted")
        s.t_last = t
        s.chunks[data[0]] = data[1:]
        if len(s.chunks) < s.packets:
            return None
        del self._sessions[sa]
        self.completed += 1
        payload = b"".join(s.chunks[i] for i in range(1, s.packets + 1))
        return s.pgn, payload[: s.size]

    def expire(self, t: float) -> int:
        """Abort transfers idle for longer than the timeout; return how many."""
        stale = [sa for sa, s in self._sessions.items() if t - s.t_last > self.timeout]
        for sa in stale:
            del self._sessions[sa]
        self.aborted += len(stale)
        return len(stale)
