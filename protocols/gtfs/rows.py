"""CSV tables of a GTFS feed, row by row with line numbers, and GTFS time values.

Pure helpers for `protocols.gtfs` and the central importer: every error names file, line and
field, so that a city can fix its feed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence

from protocols.errors import GtfsError

__all__ = ["Rows", "parse_time"]


def parse_time(value: str) -> int:
    """'H:MM:SS' or 'HH:MM:SS' (hours may exceed 23) to seconds; ValueError if malformed."""
    parts = value.strip().split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a GTFS time: {value!r}")
    h, m, s = (int(p) for p in parts)
    if m > 59 or s > 59 or len(parts[1]) != 2 or len(parts[2]) != 2:
        raise ValueError(f"not a GTFS time: {value!r}")
    return h * 3600 + m * 60 + s


class Rows:
    """The rows of one GTFS file as dicts, each with its line number, for precise errors."""

    def __init__(self, name: str, text: str, required: Sequence[str]) -> None:
        self.name = name
        self._reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
        try:
            header = next(self._reader)
        except StopIteration:
            raise GtfsError(f"{name} is empty", file=name, line=1) from None
        except csv.Error as exc:
            raise GtfsError(f"{name}: {exc}", file=name, line=1) from exc
        self.columns = [c.strip() for c in header]
        for field in required:
            if field not in self.columns:
                raise GtfsError(f"{name} lacks column {field}", file=name, line=1, field=field)

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        while True:
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise GtfsError(
                    f"{self.name}: {exc}", file=self.name, line=self._reader.line_num
                ) from exc
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank lines, often at the end of hand-edited files
            values = dict(zip(self.columns, (v.strip() for v in row), strict=False))
            yield self._reader.line_num, values

    def error(self, line: int, field: str, message: str) -> GtfsError:
        return GtfsError(
            f"{self.name} line {line}, {field}: {message}", file=self.name, line=line, field=field
        )

    def required(self, line: int, row: dict[str, str], field: str) -> str:
        value = row.get(field, "")
        if not value:
            raise self.error(line, field, "required value is empty")
        return value

    def number(self, line: int, row: dict[str, str], field: str, lo: float, hi: float) -> float:
        raw = self.required(line, row, field)
        try:
            value = float(raw)
        except ValueError:
            raise self.error(line, field, f"not a number: {raw!r}") from None
        if not lo <= value <= hi:
            raise self.error(line, field, f"{value} outside {lo}..{hi}")
        return value

    def integer(self, line: int, row: dict[str, str], field: str) -> int:
        raw = self.required(line, row, field)
        try:
            return int(raw)
        except ValueError:
            raise self.error(line, field, f"not an integer: {raw!r}") from None
