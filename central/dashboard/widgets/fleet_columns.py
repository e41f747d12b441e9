"""The fleet table's columns and how they fit the width of the desk's terminal (80-200+).

Every column has a rank: when the table is narrower than all of them, the least important
go first (position, records, ... ; see COLUMNS). The bus id and the alarm are never dropped and
never cut: their width is that of the longest one shown. The next stop and the trip shrink to
a minimum before anything else is dropped; a cut stop name ends in "…", a cut trip id starts
with one (GTFS trip ids share long prefixes: the end is what tells them apart).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int  # preferred
    least: int  # narrowest before it is dropped (== width: never shrinks)
    rank: int  # 0: the most important; the highest goes first
    cut_left: bool = False  # cut text keeps its end


COLUMNS = (  # in display order; rank 0 is the most important
    Column("alarm", "Alarm", 5, 5, 0),
    Column("bus", "Bus", 3, 3, 1),
    Column("status", "Status", 7, 7, 2),
    Column("timetable", "TT", 7, 7, 5),
    Column("route", "Route", 9, 9, 3),
    Column("trip", "Trip", 36, 12, 6, cut_left=True),
    Column("stop", "Next stop", 30, 12, 7),
    Column("delay", "Delay", 8, 8, 4),
    Column("speed", "km/h", 4, 4, 8),
    Column("doors", "Doors", 6, 6, 10),
    Column("seen", "Seen", 6, 6, 9),
    Column("wifi", "Wi-Fi", 5, 5, 12),
    Column("sync", "State", 12, 12, 11),
    Column("records", "Records", 8, 8, 13),
    Column("position", "Position", 19, 19, 14),
)
KEYS = tuple(c.key for c in COLUMNS)
GROWS = ("alarm", "bus")  # as wide as their longest text, never cut nor dropped
COMFORTABLE = {"trip": 20, "stop": 24}  # shrunk below this only to keep them on screen

Layout = tuple[tuple[int, int, bool], ...]  # (index in COLUMNS, width, cut_left) shown


def layout(available: int, content: dict[str, int]) -> Layout:
    """The columns shown in `available` cells and their widths; `content` gives the longest
    text of the columns in GROWS. Each column is followed by one space.

    The least important columns go first while the trip and the stop still have a comfortable
    width; only when nothing else is left to drop do those two shrink to their least."""
    best = {c.key: max(c.width, content.get(c.key, 0)) for c in COLUMNS}
    least = {c.key: max(c.least, content.get(c.key, 0)) for c in COLUMNS}
    widths = {c.key: min(best[c.key], COMFORTABLE.get(c.key, best[c.key])) for c in COLUMNS}
    shown = list(COLUMNS)

    def fits() -> bool:
        return sum(widths[c.key] + 1 for c in shown) <= available

    for c in sorted(COLUMNS, key=lambda c: -c.rank):  # the least important go first
        if fits():
            break
        if c.key in COMFORTABLE:  # before a flexible column goes, the flexible ones shrink
            for k in COMFORTABLE:
                widths[k] = least[k]
            if fits():
                break
        if c.key not in GROWS:
            shown.remove(c)
    spare = available - sum(widths[c.key] + 1 for c in shown)
    for target in (COMFORTABLE, best):  # room left: up to comfortable, then up to the best
        for c in sorted(shown, key=lambda c: c.rank):
            grow = max(0, min(target.get(c.key, best[c.key]) - widths[c.key], spare))
            widths[c.key] += grow
            spare -= grow
    return tuple((COLUMNS.index(c), widths[c.key], c.cut_left) for c in shown)


def line_width(cols: Layout) -> int:
    return sum(w + 1 for _, w, _ in cols)


def fit(text: str, width: int, cut_left: bool = False) -> str:
    """`text` in exactly `width` cells: padded, or cut with an ellipsis where it was cut."""
    if len(text) <= width:
        return text.ljust(width)
    if width <= 1:
        return "…"[:width]
    return "…" + text[-(width - 1) :] if cut_left else text[: width - 1] + "…"


def longest(texts: Iterable[str]) -> int:
    return max((len(t) for t in texts), default=0)


def delay_text(seconds: int | None) -> str:
    """A delay as a dispatcher says it: "+3 min" late, "\N{MINUS SIGN}1 min" early,
    "0 min" on time; whole minutes, rounded."""
    if seconds is None:
        return ""
    minutes = int((abs(seconds) + 30) // 60)
    if minutes == 0:
        return "0 min"
    sign = "+" if seconds > 0 else "\N{MINUS SIGN}"
    return f"{sign}{minutes} min"
