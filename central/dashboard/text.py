"""Text that came from a bus, a passenger or central, for the screen: shown as written.

Textual reads a plain `str` given to a Static, a Label, a DataTable cell, a notification or a
palette entry as content markup: `[@click=app.quit]` in a passenger's feedback becomes a link
that quits, `[/]` in a bus's event kind an error that closes every dashboard. So nothing on
the dashboard builds markup out of data: widgets get `rich.text.Text` made here, whose pieces
are literal and whose styles are given as styles (`line(("Vehicle", "bold"), ...)`), and
times go through `clock`, which never raises.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from rich.text import Text

__all__ = ["clean", "clock", "line", "lines", "plain"]

# C0 and C1 controls but tab and newline: an escape sequence must not reach the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

Piece = str | Text | tuple[str, str]


def clean(value: object) -> str:
    """A value as a string with control characters replaced (for widgets that draw str)."""
    return _CONTROL.sub("\N{REPLACEMENT CHARACTER}", "" if value is None else str(value))


def plain(value: object, style: str = "") -> Text:
    """Any value as literal text (None: empty), never markup."""
    return Text(clean(value), style=style, end="")


def line(*pieces: Piece) -> Text:
    """Literal pieces in a row; a (text, style) piece is styled, its text still literal."""
    out = Text(end="")
    for piece in pieces:
        if isinstance(piece, Text):
            out.append_text(piece)
        elif isinstance(piece, tuple):
            out.append(clean(piece[0]), style=piece[1])
        else:
            out.append(clean(piece))
    return out


def lines(rows: list[Text]) -> Text:
    """Lines of text, one below the other."""
    return Text("\n", end="").join(rows)


def clock(t: object, fmt: str = "%H:%M:%S") -> str:
    """A time of day for a unix time; "" for no time, "?" for one no clock can show."""
    if not isinstance(t, int | float) or isinstance(t, bool):
        return ""
    try:
        if not math.isfinite(t):
            return "?"
        return dt.datetime.fromtimestamp(t).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return "?"
