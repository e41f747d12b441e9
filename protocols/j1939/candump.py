"""candump log lines (can-utils), sans-IO: parse and format.

The log format (`candump -L`, also what `canplayer` reads) is
`(1436509052.249713) can0 0CF00400#FF7D7D40187DFFFF`: an 8-hex-digit id is an extended
(29-bit) frame, a 3-digit id a standard one. The screen format with an absolute timestamp
(`candump -ta`: `(1436509052.249713)  can0  0CF00400   [8]  FF 7D 7D ...`) is read too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LOG = re.compile(r"^\((\d+(?:\.\d*)?)\)\s+(\S+)\s+([0-9A-Fa-f]{1,8})#([0-9A-Fa-f]*)\s*$")
_SCREEN = re.compile(
    r"^\((\d+(?:\.\d*)?)\)\s+(\S+)\s+([0-9A-Fa-f]{1,8})\s+\[(\d+)\]((?:\s+[0-9A-Fa-f]{2})*)\s*$"
)


@dataclass(frozen=True, slots=True)
class CandumpFrame:
    """One data frame of a candump log."""

    t: float
    iface: str
    can_id: int
    data: bytes
    extended: bool


def parse_candump(line: str) -> CandumpFrame | None:
    """Parse one log line; None for blank lines, comments, remote, FD or malformed frames."""
    m = _LOG.match(line.strip())
    if m is not None:
        hexdata = m[4]
        if len(hexdata) % 2 or len(hexdata) > 16:
            return None
        data = bytes.fromhex(hexdata)
    else:
        m = _SCREEN.match(line.strip())
        if m is None:
            return None
        data = bytes.fromhex(m[5].replace(" ", "").replace("\t", ""))
        if len(data) != int(m[4]) or len(data) > 8:
            return None
    ident = m[3]
    can_id = int(ident, 16)
    extended = len(ident) > 3
    if can_id > (0x1FFFFFFF if extended else 0x7FF):
        return None
    return CandumpFrame(float(m[1]), m[2], can_id, data, extended)


def parse_candump_line(line: str) -> tuple[float, str, int, bytes] | None:
    """(timestamp, interface, can_id, data) of one log line, or None if it is not a frame."""
    f = parse_candump(line)
    return None if f is None else (f.t, f.iface, f.can_id, f.data)


def format_candump_line(
    t: float, iface: str, can_id: int, data: bytes, extended: bool = True
) -> str:
    """One `candump -L` line (without newline) for a frame."""
    ident = f"{can_id:08X}" if extended else f"{can_id:03X}"
    return f"({t:.6f}) {iface} {ident}#{data.hex().upper()}"
