"""NMEA 0183 framing: one line checked (start, length, checksum, address) and split.

The decoder (decoder.py) and the epoch assembler (epoch.py) both work on `Sentence`s; it
lives here, below both, so that neither imports the other back.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.errors import NmeaError

__all__ = [
    "BAD_ADDRESS",
    "BAD_CHECKSUM",
    "BAD_FIELD",
    "JUNK",
    "MAX_SENTENCE",
    "OVERLONG",
    "TRUNCATED",
    "InvalidSentence",
    "Sentence",
    "checksum",
    "parse_sentence",
]

# Longest sentence accepted, from '$' to the checksum digits. NMEA says 82 bytes with CR LF;
# survey receivers exceed it (Trimble RTK: 91), so we allow what gpsd allows (NMEA_MAX).
MAX_SENTENCE = 102

# Rejection reasons, the keys of `NmeaStats.rejected_by_reason`.
JUNK = "junk"  # bytes that are no sentence at all (binary start-up noise, a lone fragment)
OVERLONG = "overlong"  # longer than MAX_SENTENCE (two sentences merged, a line with no end)
TRUNCATED = "truncated"  # no '*' checksum: the line was cut off
BAD_CHECKSUM = "bad_checksum"
BAD_ADDRESS = "bad_address"  # no talker/type after '$'
BAD_FIELD = "bad_field"  # a known sentence with a malformed or missing field

_HEX = frozenset("0123456789ABCDEFabcdef")


class InvalidSentence(NmeaError):
    """A line that is not a valid NMEA sentence; `reason` is one of the rejection reasons."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Sentence:
    """One checked sentence: `$GPRMC,...` is talker 'GP', type 'RMC'.

    Proprietary sentences (`$PUBX,00,...`, `$PMTK001,...`) have talker 'P' and the rest of the
    address as type ('UBX', 'MTK001'); `fields` never includes the address or the checksum.
    """

    talker: str
    type: str
    fields: tuple[str, ...]

    @property
    def proprietary(self) -> bool:
        return self.talker == "P"


def checksum(body: str) -> int:
    """XOR of the characters between '$' and '*' (pass exactly that part)."""
    value = 0
    for byte in body.encode("ascii", "replace"):
        value ^= byte
    return value


def parse_sentence(line: bytes | str) -> Sentence:
    """Check framing and checksum of one sentence and split it; raises `InvalidSentence`.

    Leading/trailing whitespace and the CR LF are ignored. The checksum is required: a line
    without one is almost always a cut-off line.
    """
    if isinstance(line, bytes):
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidSentence("not ASCII", reason=JUNK) from None
    else:
        text = line
    text = text.strip()
    if not text or text[0] not in "$!":
        raise InvalidSentence("does not start with '$'", reason=JUNK)
    if len(text) > MAX_SENTENCE:
        raise InvalidSentence(f"{len(text)} bytes, more than {MAX_SENTENCE}", reason=OVERLONG)
    star = text.rfind("*")
    if star < 0:
        raise InvalidSentence("no checksum", reason=TRUNCATED)
    body = text[1:star]
    digits = text[star + 1 :]
    if not body.isprintable() or not body.isascii() or "$" in body:
        raise InvalidSentence("control or non-ASCII characters", reason=JUNK)
    if len(digits) != 2 or not _HEX.issuperset(digits):
        raise InvalidSentence(f"bad checksum field {digits!r}", reason=BAD_CHECKSUM)
    if int(digits, 16) != checksum(body):
        raise InvalidSentence(f"checksum {digits} != {checksum(body):02X}", reason=BAD_CHECKSUM)
    parts = body.split(",")
    address = parts[0]
    if not address.isalnum() or not address.isascii():
        raise InvalidSentence(f"bad address {address!r}", reason=BAD_ADDRESS)
    if address[0] == "P" and len(address) >= 2:
        talker, kind = "P", address[1:]
    elif len(address) >= 3:
        talker, kind = address[:2], address[2:]
    else:
        raise InvalidSentence(f"bad address {address!r}", reason=BAD_ADDRESS)
    return Sentence(talker=talker, type=kind, fields=tuple(parts[1:]))
