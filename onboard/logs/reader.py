"""The newest lines of the agent's log that a `logs` command asks for, packed for its answer.

The rotated files are read newest first (agent.log, then agent.log.1, ...), from their ends,
record by record (a record is a line with a time and the lines that follow it without one: a
traceback stays with its error). A record is kept when its time is at or after `now - since_s`
and, after redaction, it contains `grep` (a plain substring: grep runs on the redacted text,
so asking for a secret finds nothing). Reading stops at the first record older than the
window, at SCAN_BYTES read, or when the kept text reaches RAW_CAP; the newest records that fit
`max_bytes` compressed are sent, oldest first. `truncated` says that older matching lines were
left out.

The command's handler is synchronous (onboard/link/commands.py), so the cost is bounded: at
most SCAN_BYTES read and redacted, and at most WORK_S spent (then `truncated`). Measured on the
2-core dev machine (/tmp bench, 4 MiB scanned, grep matching nothing): 0.4 s for ordinary lines,
0.9 s when every line holds a password= and a token: (all redacted); the whole 1 MiB of newest
lines with no grep: 0.13 s. A technician's command now and then; the loop can afford that.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from onboard.logs.disk import FILES
from onboard.logs.redact import Redactor
from protocols.schemas import Scalar

__all__ = ["RAW_CAP", "SCAN_BYTES", "Found", "log_files", "read_log"]

SCAN_BYTES = 4 * 2**20  # the most read from disk for one answer
RAW_CAP = 2**20  # the most text kept before compressing (logs compress ~8:1)
WORK_S = 1.0  # the most time spent reading and redacting (the agent's loop waits meanwhile)
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}) ")
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Found:
    """What goes into the answer's data."""

    log: str  # protocols/logtext.py: zlib, base64
    lines: int
    bytes: int  # of the text before compression
    truncated: bool  # older matching lines were left out (size, or the scan's bound)

    def data(self) -> dict[str, Scalar]:
        return {
            "log": self.log,
            "lines": self.lines,
            "bytes": self.bytes,
            "truncated": self.truncated,
        }


def log_files(path: Path) -> list[Path]:
    """The log's files, newest first, those that exist."""
    names = [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, FILES + 8)]
    return [p for p in names if p.is_file()]


def _lines_backwards(path: Path, budget: list[int]) -> Iterator[str]:
    """The file's lines from its last to its first, reading at most `budget[0]` bytes (the
    budget shared by all files goes down as they are read)."""
    with path.open("rb") as f:
        end = f.seek(0, 2)
        tail = b""
        while end > 0 and budget[0] > 0:
            size = min(_CHUNK, end, budget[0])
            end -= size
            budget[0] -= size
            f.seek(end)
            block = f.read(size) + tail
            parts = block.split(b"\n")
            tail = parts[0]  # maybe the end of a line that began before `end`
            for raw in reversed(parts[1:]):
                yield raw.decode("utf-8", errors="replace")
        if end == 0:
            yield tail.decode("utf-8", errors="replace")


_times: dict[str, float] = {}


def _time_of(line: str) -> float | None:
    found = _TIME.match(line)
    if found is None:
        return None
    stamp = found.group(1)
    t = _times.get(stamp)
    if t is None:
        try:
            t = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()
        except ValueError:
            return None
        if len(_times) > 10_000:
            _times.clear()
        _times[stamp] = t
    return t


def _records(files: list[Path]) -> Iterator[tuple[float | None, str]]:
    """(time, text) of each record, newest first; None: lines before any timed line."""
    budget = [SCAN_BYTES]
    for path in files:
        pending: list[str] = []
        try:
            for line in _lines_backwards(path, budget):
                if not line and not pending:
                    continue  # the file's last newline
                pending.append(line)
                t = _time_of(line)
                if t is not None:
                    yield t, "\n".join(reversed(pending))
                    pending = []
        except OSError:
            continue  # rotated away while read: the others still count
        if pending:
            yield None, "\n".join(reversed(pending))
        if budget[0] <= 0:
            yield None, ""  # the scan's bound: said as truncated
            return


def read_log(
    path: Path, redact: Redactor, *, now: float, since_s: float, grep: str, max_bytes: int
) -> Found:
    """The answer to a `logs` command (see the module docstring)."""
    cutoff = now - since_s
    kept: list[str] = []  # newest first
    size = 0
    truncated = False
    give_up = time.monotonic() + WORK_S
    for t, text in _records(log_files(path)):
        if time.monotonic() > give_up:
            truncated = True
            break
        if t is None:
            if not text:
                truncated = True
                break
            continue  # no time: not known to be in the window
        if t < cutoff:
            break
        clean = redact(text)
        if grep and grep not in clean:
            continue
        if size + len(clean) + 1 > RAW_CAP:
            truncated = True
            break
        kept.append(clean)
        size += len(clean) + 1
    return _fit(kept, max_bytes, truncated)


def _fit(kept: list[str], max_bytes: int, truncated: bool) -> Found:
    """The newest of `kept` (newest first) whose compressed text is at most `max_bytes`."""
    n = len(kept)
    while True:
        text = "\n".join(reversed(kept[:n]))
        compressed = zlib.compress(text.encode(), 6)  # protocols/logtext.py unpacks it
        if len(compressed) <= max_bytes or n == 0:
            break
        # fewer records, in proportion (a little less: compression is not linear)
        n = min(n - 1, int(n * max_bytes / len(compressed) * 0.95))
    packed = base64.b64encode(compressed).decode("ascii")
    lines = text.count("\n") + 1 if text else 0
    return Found(packed, lines, len(text.encode()), truncated or n < len(kept))
