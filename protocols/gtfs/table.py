"""Streaming GTFS tables and the report of what is wrong with a feed, for large feeds.

`Table` reads one GTFS file from any iterable of text lines (a file object, a zip member
wrapped in `io.TextIOWrapper`, a list) and yields each row's values by column position with its
line number, so the importer never holds a whole file in memory and never builds a dict per
row (millions of stop times). `Report` collects every problem instead of stopping at the first:
a city fixing its feed wants the whole list. Pure: no file is opened here.
"""

from __future__ import annotations

import csv
import datetime
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from protocols.errors import GtfsError

__all__ = ["MAX_COLUMNS", "Issue", "Report", "Table", "TimeParser", "is_count", "parse_date"]

Severity = Literal["error", "warning"]

# A GTFS file has a few tens of columns; thousands are no feed, and would make every row (and
# the importer's staging table) that wide.
MAX_COLUMNS = 500


def is_count(value: str) -> bool:
    """A non-negative integer a store can keep: ASCII digits only ('²' is a digit to
    `str.isdigit` but not to `int`), at most nine of them."""
    return 0 < len(value) <= 9 and value.isascii() and value.isdigit()


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem of a feed: where it is (file, line, field) and what it is."""

    severity: Severity
    code: str  # stable, machine-readable kind: "unknown_stop", "unused_stop"...
    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f" line {self.line}"
        if self.field:
            where += f", {self.field}"
        return f"{self.severity}: {where}: {self.message}"

    def as_error(self) -> GtfsError:
        return GtfsError(str(self), file=self.file, line=self.line, field=self.field)


@dataclass(slots=True)
class Report:
    """Errors (the feed is refused) and warnings (imported anyway), counted per code.

    Only the first `max_listed` issues of each code are kept for display: a feed with 50,000
    unused stops needs one line and a count, not 50,000 lines.
    """

    max_listed: int = 20
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    counts: Counter[tuple[Severity, str]] = field(default_factory=Counter)

    @property
    def error_count(self) -> int:
        return sum(n for (sev, _), n in self.counts.items() if sev == "error")

    @property
    def warning_count(self) -> int:
        return sum(n for (sev, _), n in self.counts.items() if sev == "warning")

    def add(self, issue: Issue) -> None:
        key = (issue.severity, issue.code)
        self.counts[key] += 1
        if self.counts[key] <= self.max_listed:
            (self.errors if issue.severity == "error" else self.warnings).append(issue)

    def error(self, code: str, file: str, line: int | None, fld: str | None, message: str) -> None:
        self.add(Issue("error", code, file, line, fld, message))

    def warn(self, code: str, file: str, line: int | None, fld: str | None, message: str) -> None:
        self.add(Issue("warning", code, file, line, fld, message))

    def merge(self, other: Report) -> None:
        listed = Counter((i.severity, i.code) for i in (*self.errors, *self.warnings))
        for issue in (*other.errors, *other.warnings):
            key = (issue.severity, issue.code)
            if listed[key] < self.max_listed:
                listed[key] += 1
                (self.errors if issue.severity == "error" else self.warnings).append(issue)
        self.counts.update(other.counts)

    def unlisted(self) -> dict[tuple[Severity, str], int]:
        """Per code, how many issues were counted but not kept for display."""
        return {k: n - self.max_listed for k, n in self.counts.items() if n > self.max_listed}


class Table:
    """The rows of one GTFS file, streamed: `(line, values)` with values in header order.

    A missing required column raises `GtfsError` at once: nothing in the file can be read
    without it. Rows shorter than the header are padded with empty values (GTFS allows
    trailing empty fields to be left out); values are stripped of surrounding spaces.
    """

    def __init__(self, name: str, lines: Iterable[str], required: Sequence[str] = ()) -> None:
        self.name = name
        self._reader = csv.reader(iter(lines))
        try:
            header = next(self._reader)
        except StopIteration:
            raise GtfsError(f"{name} is empty", file=name, line=1) from None
        except csv.Error as exc:
            raise GtfsError(f"{name} line 1: {exc}", file=name, line=1) from exc
        if len(header) > MAX_COLUMNS:
            raise GtfsError(
                f"{name} line 1: {len(header)} columns, at most {MAX_COLUMNS}", file=name, line=1
            )
        self.columns = [c.strip().lstrip("\ufeff") for c in header]
        self._positions = {c: i for i, c in enumerate(self.columns)}
        for column in required:
            self.require(column)

    def index(self, column: str) -> int | None:
        """The position of a column, None if the file does not have it."""
        return self._positions.get(column)

    def require(self, column: str) -> int:
        """The position of a column the caller cannot do without; `GtfsError` if missing."""
        i = self._positions.get(column)
        if i is None:
            raise GtfsError(
                f"{self.name} line 1, {column}: required column missing",
                file=self.name,
                line=1,
                field=column,
            )
        return i

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        width = len(self.columns)
        reader = self._reader
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise GtfsError(
                    f"{self.name} line {reader.line_num}: {exc}",
                    file=self.name,
                    line=reader.line_num,
                ) from exc
            if len(row) < width:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank lines, often at the end of hand-edited files
                row.extend([""] * (width - len(row)))
            yield reader.line_num, list(map(str.strip, row))


_TIME = re.compile(r"(\d{1,3}):([0-5]\d):([0-5]\d)\Z")


class TimeParser:
    """GTFS times ('H:MM:SS', hours may pass 24) to seconds, with a cache.

    A large feed repeats the same few tens of thousands of time values millions of times.
    """

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def __call__(self, value: str) -> int:
        """Seconds since the service day's start; ValueError if `value` is not a GTFS time."""
        seconds = self._cache.get(value)
        if seconds is None:
            m = _TIME.match(value)
            if m is None:
                raise ValueError(f"not a GTFS time (H:MM:SS): {value!r}")
            seconds = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
            if len(self._cache) < 500_000:
                self._cache[value] = seconds
        return seconds


def parse_date(value: str) -> str:
    """A GTFS date 'YYYYMMDD', checked to be a real day; returned as is. ValueError if not."""
    if len(value) != 8 or not value.isdigit():
        raise ValueError(f"not a GTFS date (YYYYMMDD): {value!r}")
    try:
        datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise ValueError(f"not a day of the calendar: {value!r}") from None
    return value
