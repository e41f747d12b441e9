"""Sans-IO NMEA 0183 decoder: bytes in, one `Fix` per receiver epoch out, agreeing with gpsd.

Use it like h11: feed whatever the serial port or file gave with `receive_data()` (any
chunking), then drain `next_fix()` until it returns None; call `flush()` at end of input to get
the last epoch. Nothing here raises on bad input: truncated lines, bad checksums, malformed
fields, sentences we do not decode (proprietary ones but Garmin's `$PGRMZ`) and binary junk are
counted in `stats` and skipped.

An *epoch* is one navigation solution: all sentences carrying the same UTC time of day, plus the
untimed ones (GSA, VTG, GSV) that arrive while it is open. A sentence with a new time closes the
epoch and the decoder emits its fix. How the sentences of an epoch merge into a fix (mode, the
speed derived from successive positions when the receiver sends none, ...) follows gpsd's NMEA
driver and core (`driver_nmea0183.c`, `libgpsd_core.c`), so that our fixes agree with gpsd's TPV
reports on gpsd's own regression captures (see `tests/test_nmea_gpsd_agreement.py`); the
gpsd-specific rules live in `protocols/nmea/epoch.py` (merging) and `protocols/nmea/cycle.py`
(when a cycle ends and when gpsd reports: a fix is its epoch as gpsd last reported it).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from protocols.errors import NmeaError
from protocols.nmea.epoch import EpochAssembler, Fix
from protocols.nmea.framing import (
    BAD_FIELD,
    JUNK,
    MAX_SENTENCE,
    OVERLONG,
    InvalidSentence,
    Sentence,
    checksum,
    parse_sentence,
)

__all__ = [
    "Fix",
    "InvalidSentence",
    "NmeaDecoder",
    "NmeaStats",
    "Sentence",
    "checksum",
    "parse_sentence",
]

# Most fixes kept when the caller does not drain `next_fix()`; the oldest are dropped first.
MAX_PENDING_FIXES = 256


@dataclass(slots=True)
class NmeaStats:
    """What the decoder did with its input. Every line is ok, ignored or rejected."""

    sentences_ok: int = 0  # checked and used
    ignored: int = 0  # checked but not used: proprietary or a type we do not decode
    rejected: int = 0
    fixes: int = 0
    fixes_dropped: int = 0  # fixes the caller did not drain in time (MAX_PENDING_FIXES)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    ignored_by_type: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.rejected_by_reason[reason] += 1


class NmeaDecoder:
    """Bytes (or lines) in, epoch fixes out. Never raises on bad input; see the module doc."""

    def __init__(self) -> None:
        self.stats = NmeaStats()
        self._buffer = b""
        # The current line overflowed the buffer: its start is gone (and counted), only a
        # sentence beginning at its last '$' can still be whole.
        self._cut = False
        self._fixes: deque[Fix] = deque()
        self._epochs = EpochAssembler(self._emit)

    # -- input ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes as they came from the device; lines may be split anywhere."""
        if not data:
            return
        buffer = self._buffer + data if self._buffer else data
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            self._complete_line(line)
        if len(self._buffer) > MAX_SENTENCE + 2:
            self._overflow()

    def receive_line(self, line: bytes | str) -> None:
        """Feed one complete line (with or without its CR LF)."""
        self._line(line.encode("latin-1", "replace") if isinstance(line, str) else line)

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for a line's end (at most a sentence's worth)."""
        return len(self._buffer)

    def next_fix(self) -> Fix | None:
        """The oldest completed epoch fix not yet taken, or None."""
        return self._fixes.popleft() if self._fixes else None

    def flush(self) -> Fix | None:
        """End of input: close the open epoch; return the oldest fix not yet taken, if any.

        A partial line left in the buffer (no newline) is decoded too.
        """
        if self._buffer:
            rest, self._buffer = self._buffer, b""
            self._complete_line(rest)
        self._cut = False
        self._epochs.close()
        return self.next_fix()

    # -- internals -----------------------------------------------------------------------------

    def _complete_line(self, line: bytes) -> None:
        if self._cut:
            self._cut = False
            start = line.rfind(b"$")
            if start < 0:
                return
            line = line[start:]
        self._line(line)

    def _overflow(self) -> None:
        """The buffer holds more than a sentence and no newline: keep only a possible sentence."""
        buffer = self._buffer
        start = buffer.rfind(b"$")
        # Junk before the last '$' of a line is counted once per line, however it was chunked.
        counted = self._cut
        if start > 0 and not counted and buffer[:start].strip():
            self.stats.reject(JUNK)
            counted = True
        if start >= 0 and len(buffer) - start <= MAX_SENTENCE + 2:
            self._buffer = buffer[start:]
            self._cut = counted
            return
        if start >= 0:
            self.stats.reject(OVERLONG)
        elif not counted:
            self.stats.reject(JUNK)
        self._buffer = b""
        self._cut = True

    def _line(self, line: bytes) -> None:
        start = line.rfind(b"$")
        if start < 0:
            start = line.rfind(b"!")
        if start != 0:
            if start < 0:
                if line.strip():
                    self.stats.reject(JUNK)
                return
            # Junk before a sentence on the same line (binary start-up noise, a cut line).
            if line[:start].strip():
                self.stats.reject(JUNK)
            line = line[start:]
        try:
            sentence = parse_sentence(line)
        except InvalidSentence as exc:
            self.stats.reject(exc.reason)
            return
        try:
            used = self._epochs.feed(sentence)
        except NmeaError:
            self.stats.reject(BAD_FIELD)
            return
        if used:
            self.stats.sentences_ok += 1
        else:
            self.stats.ignored += 1
            self.stats.ignored_by_type[sentence.talker + sentence.type] += 1

    def _emit(self, fix: Fix) -> None:
        if len(self._fixes) >= MAX_PENDING_FIXES:
            self._fixes.popleft()
            self.stats.fixes_dropped += 1
        self._fixes.append(fix)
        self.stats.fixes += 1
