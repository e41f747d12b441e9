"""Importing a GTFS feed (zip or folder) into central's SQLite: `busfleet central import-gtfs`.

The feed replaces the previous one whole, in one transaction: readers (the service, the
GTFS-Realtime server, `central assign`) see the old timetable or the new one, never a mix,
and a refused feed leaves the old one in place. Every file is streamed (csv over a text
stream of the zip member) through the pure checkers of `protocols.gtfs_*` straight into
`executemany` (central/store/gtfs_load.py), so millions of stop times need neither memory
nor minutes.

What is an error and what a warning: see `protocols/gtfs/check.py`. An error anywhere means
nothing is stored and `GtfsInvalid` carries the whole report; warnings are returned with the
counts.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime
import io
import logging
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from central.operator_files import NotAFile, check_regular
from central.store import gtfs_load
from central.store.db import CentralStore
from central.store.gtfs_load import FeedWriter
from central.timetables import default_root, record_items, record_version
from protocols import codec
from protocols.errors import GtfsError
from protocols.gtfs.calendar import (
    CALENDAR_COLUMNS,
    CALENDAR_DATES_COLUMNS,
    Service,
    read_agencies,
    read_calendar,
    read_calendar_dates,
)
from protocols.gtfs.check import (
    ROUTE_COLUMNS,
    SHAPE_COLUMNS,
    STOP_COLUMNS,
    TRIP_COLUMNS,
    ShapeReader,
    read_routes,
    read_stops,
    read_trips,
)
from protocols.gtfs.feed import ARCHIVE_ERRORS
from protocols.gtfs.package import FILES as PACKAGE_FILES
from protocols.gtfs.package import build_package
from protocols.gtfs.stop_times import STOP_TIME_COLUMNS, StopTimeReader, Unsorted
from protocols.gtfs.table import Issue, Report, Table

__all__ = ["GtfsInvalid", "ImportResult", "import_gtfs"]

log = logging.getLogger("busfleet.central.gtfs_import")

REQUIRED = ("routes.txt", "trips.txt", "stops.txt", "stop_times.txt")
OPTIONAL = ("agency.txt", "calendar.txt", "calendar_dates.txt", "shapes.txt")

OPEN_ERRORS: tuple[type[Exception], ...] = (*ARCHIVE_ERRORS, ValueError)
READ_ERRORS: tuple[type[Exception], ...] = (*ARCHIVE_ERRORS, NotAFile)


def issue_lines(report: Report) -> list[str]:
    """The report as lines for a person: each listed issue, then what was not listed."""
    lines = [str(issue) for issue in (*report.errors, *report.warnings)]
    for (severity, code), n in sorted(report.unlisted().items()):
        lines.append(f"... and {n} more {severity}s of kind {code}")
    return lines


class GtfsInvalid(Exception):
    """The feed has errors; nothing was stored. `report` lists them (file, line, field)."""

    def __init__(self, report: Report) -> None:
        first = report.errors[0] if report.errors else None
        super().__init__(f"{report.error_count} errors in the feed; first: {first}")
        self.report = report


@dataclass(frozen=True, slots=True)
class ImportResult:
    summary: dict[str, Any]  # counts per kind, warnings, service dates: the CLI's JSON line
    report: Report


MAX_LINE_CHARS = 100_000  # a real line is under a kilobyte; one of a gigabyte is an attack
MAX_FILE_BYTES = 4 * 2**30  # decompressed, per file: the largest national feeds are below
ENCODINGS = ("utf-8", "cp1252", "latin-1")  # tried in this order when none is given


def check_encoding(encoding: str) -> str:
    """The codec's canonical name if it is a text encoding Python knows; GtfsError if not."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise GtfsError(f"unknown encoding {encoding!r}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise GtfsError(f"{encoding!r} is not a text encoding")
    return info.name


class _Capped(io.RawIOBase):
    """A byte stream that refuses to give more than `cap` bytes: a zip member's size is
    whatever its header claims, so the bytes are counted while they are decompressed."""

    def __init__(self, raw: IO[bytes], name: str, cap: int) -> None:
        self._raw, self._name, self._cap, self.count = raw, name, cap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        self.count += len(data)
        if self.count > self._cap:
            raise GtfsError(f"{self._name} is larger than {self._cap} bytes", file=self._name)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Source:
    """The files of a feed in a folder or a zip (possibly nested in a folder inside it),
    read as text lines of bounded length, each file in its encoding (`encoding_of`)."""

    def __init__(
        self,
        path: Path,
        *,
        encoding: str | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        max_line_chars: int = MAX_LINE_CHARS,
    ) -> None:
        self.path = path
        self.forced = None if encoding is None else check_encoding(encoding)
        self.max_file_bytes = max_file_bytes
        self.max_line_chars = max_line_chars
        self.encodings: dict[str, str] = {}  # file name -> the encoding it was read with
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, zipfile.ZipInfo] = {}
        try:
            check_regular(path, folders=True)  # a FIFO or a device would block the reader
        except NotAFile as exc:
            raise GtfsError(f"cannot read GTFS feed {path}: {exc}") from exc
        try:
            if not path.is_dir():
                self._zip = zipfile.ZipFile(path)
                for info in self._zip.infolist():
                    if not info.is_dir():
                        self._members.setdefault(Path(info.filename).name, info)
        except OPEN_ERRORS as exc:
            raise GtfsError(f"cannot read GTFS feed {path}: {exc}") from exc

    def has(self, name: str) -> bool:
        if self._zip is not None:
            return name in self._members
        return (self.path / name).is_file()

    def _bytes(self, name: str) -> io.BufferedReader:
        """The file's bytes, at most `max_file_bytes` of them."""
        raw: IO[bytes]
        try:
            if self._zip is not None:
                info = self._members[name]
                if info.file_size > self.max_file_bytes:
                    raise GtfsError(f"{name} is larger than {self.max_file_bytes} bytes", file=name)
                raw = self._zip.open(info)
            else:
                raw = check_regular(self.path / name).open("rb")
        except READ_ERRORS as exc:
            raise GtfsError(f"cannot read {name}: {exc}", file=name) from exc
        return io.BufferedReader(_Capped(raw, name, self.max_file_bytes), 1 << 16)

    def encoding_of(self, name: str) -> str:
        """The given encoding; else UTF-8 if the whole file is (a byte order mark or not),
        else Windows-1252, else Latin-1 (which any bytes are). Found by reading it once."""
        if self.forced is not None:
            return self.forced
        for encoding in ENCODINGS[:-1]:
            decoder = codecs.getincrementaldecoder(encoding)()
            try:
                with self._bytes(name) as raw:
                    while chunk := raw.read(1 << 20):
                        if not chunk.isascii() or decoder.getstate()[0]:  # ASCII is both
                            decoder.decode(chunk)
                    decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                continue
            except ARCHIVE_ERRORS as exc:  # a corrupt archive
                raise GtfsError(f"cannot read {name}: {exc}", file=name) from exc
            return encoding
        return ENCODINGS[-1]

    @contextlib.contextmanager
    def lines(self, name: str) -> Iterator[Iterable[str]]:
        """The text lines of one file in its encoding (a UTF-8 byte order mark is dropped);
        GtfsError at a line longer than `max_line_chars`, never reading it whole."""
        encoding = self.encodings.get(name) or self.encoding_of(name)
        self.encodings[name] = encoding
        raw = self._bytes(name)
        python_name = "utf-8-sig" if encoding == "utf-8" else encoding
        text = io.TextIOWrapper(raw, encoding=python_name, newline="")
        try:
            yield _decoded(text, name, encoding, self.max_line_chars)
        finally:
            text.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _decoded(text: io.TextIOWrapper, name: str, encoding: str, limit: int) -> Iterator[str]:
    line = 0
    try:
        while value := text.readline(limit + 1):
            line += 1
            if len(value) > limit:
                raise GtfsError(
                    f"{name} line {line}: longer than {limit} characters", file=name, line=line
                )
            yield value
    except UnicodeDecodeError as exc:
        raise GtfsError(
            f"{name} near line {line + 1}: not {encoding} ({exc.reason})", file=name
        ) from exc
    except ARCHIVE_ERRORS as exc:  # a truncated or corrupt archive
        raise GtfsError(f"cannot read {name}: {exc}", file=name) from exc


def _issue(exc: GtfsError, path: str) -> Issue:
    """A file that cannot be read on (a missing column, broken CSV) as a report entry."""
    message = str(exc)
    # The message names the place already; the Issue names it again when printed.
    head, sep, rest = message.partition(": ")
    if sep and exc.file and head.startswith(exc.file):
        message = rest
    return Issue("error", "unreadable", exc.file or path, exc.line, exc.field, message)


def import_gtfs(
    store: CentralStore,
    path: str | Path,
    *,
    now: float | None = None,
    max_listed: int = 20,
    encoding: str | None = None,
    source_name: str | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_line_chars: int = MAX_LINE_CHARS,
    timetable_dir: str | Path | None = None,
) -> ImportResult:
    """Check and store the feed at `path`, replacing the current one. See the module doc.

    `encoding` forces one for every file (else each is UTF-8 if it can be, else Windows-1252
    or Latin-1, with a warning); `source_name` is what the feed's row says it came from
    (default: the resolved path). The feed becomes the next timetable version
    (central/timetables.py), its package written under `timetable_dir` (default: beside
    the database); the summary says which (`timetable_version`, `package_sha256`). Raises
    `GtfsError` when the feed cannot be read at all, `GtfsInvalid` when it has errors.
    """
    started = time.monotonic()
    now = time.time() if now is None else now
    source = _Source(
        Path(path), encoding=encoding, max_file_bytes=max_file_bytes, max_line_chars=max_line_chars
    )
    report = Report(max_listed=max_listed)
    try:
        missing = [n for n in REQUIRED if not source.has(n)]
        for name in missing:
            report.error("missing_file", name, None, None, "required file missing")
        if not source.has("calendar.txt") and not source.has("calendar_dates.txt"):
            report.error(
                "missing_file",
                "calendar.txt",
                None,
                None,
                "neither calendar.txt nor calendar_dates.txt",
            )
        if report.error_count:
            raise GtfsInvalid(report)
        try:
            # The package before the write transaction: compressing a big feed takes seconds
            # that nobody else should wait for the database.
            root = default_root(store) if timetable_dir is None else Path(timetable_dir)
            package = _package(source)
            with gtfs_load.replacing(store) as feed:
                summary = _load(feed, source, report, now)
                summary["encoding"] = _encodings(source, report)
                if report.error_count:
                    raise GtfsInvalid(report)
                summary["warnings"] = report.warning_count
                summary["seconds"] = round(time.monotonic() - started, 2)
                where = source_name or str(Path(path).resolve())
                version = record_version(
                    store, package, source=where, imported=now, summary=summary, root=root
                )
                summary["timetable_version"] = version.version
                summary["package_sha256"] = version.sha256
                summary["package_bytes"] = version.size
                feed.describe(where, now, codec.encode_json(summary))
        except GtfsError as exc:  # rolled back: the old feed stays
            report.add(_issue(exc, str(path)))
            raise GtfsInvalid(report) from exc
        # What a version holds, for checks and diffs: its own transaction (see record_items).
        if not record_items(store, version.version):
            log.warning("timetable version %d: a newer import came first", version.version)
    finally:
        source.close()
    return ImportResult(summary, report)


def _package(source: _Source) -> bytes:
    """The timetable package of the feed (protocols/gtfs/package.py): each file's text as the
    import reads it (its encoding, a UTF-8 byte order mark dropped)."""
    texts: dict[str, str] = {}
    for name in PACKAGE_FILES:
        if source.has(name):
            with source.lines(name) as lines:
                texts[name] = "".join(lines)
    return build_package(texts)


def _encodings(source: _Source, report: Report) -> str:
    """The encoding the feed was read in, for the summary; a warning per file that was not
    UTF-8 without being told (GTFS asks for UTF-8: the publisher should hear of it)."""
    used = source.encodings
    if source.forced is None:
        for name, encoding in sorted(used.items()):
            if encoding != "utf-8":
                what = f"not UTF-8: read as {_CODEC_NAMES.get(encoding, encoding)}"
                report.warn("not_utf8", name, None, None, what)
    kinds = sorted(set(used.values()))
    if len(kinds) <= 1:
        return kinds[0] if kinds else source.forced or "utf-8"
    others = [f"{k}: {', '.join(n for n in sorted(used) if used[n] == k)}" for k in kinds]
    return "; ".join(others)


_CODEC_NAMES = {"cp1252": "Windows-1252 (cp1252)", "latin-1": "Latin-1 (ISO 8859-1)"}


def _load(feed: FeedWriter, source: _Source, report: Report, now: float) -> dict[str, Any]:
    agencies = []
    if source.has("agency.txt"):
        with source.lines("agency.txt") as lines:
            agencies = read_agencies(Table("agency.txt", lines), report)
        _check_timezones(report, {a.timezone for a in agencies if a.timezone})
    else:
        report.warn("missing_file", "agency.txt", None, None, "agency.txt missing (required)")
    feed.insert(
        "gtfs_agency",
        ((a.agency_id, a.name, a.url, a.timezone, a.lang, a.phone) for a in agencies),
    )
    with source.lines("routes.txt") as lines:
        routes = read_routes(Table("routes.txt", lines, ROUTE_COLUMNS), report, agencies)
    feed.insert("gtfs_routes", routes.values())
    with source.lines("stops.txt") as lines:
        stops = read_stops(Table("stops.txt", lines, STOP_COLUMNS), report)
    feed.insert("gtfs_stops", stops.values())

    services: dict[str, Service] = {}
    dates: list[tuple[str, str, int]] = []
    if source.has("calendar.txt"):
        with source.lines("calendar.txt") as lines:
            services = read_calendar(Table("calendar.txt", lines, CALENDAR_COLUMNS), report)
    if source.has("calendar_dates.txt"):
        with source.lines("calendar_dates.txt") as lines:
            table = Table("calendar_dates.txt", lines, CALENDAR_DATES_COLUMNS)
            dates = read_calendar_dates(table, report)
    feed.insert(
        "gtfs_calendar",
        ((s.service_id, s.days, s.start_date, s.end_date) for s in services.values()),
    )
    feed.insert("gtfs_calendar_dates", dates)
    service_ids = set(services) | {d[0] for d in dates}

    shape_ids: set[str] | None = None
    shape_points = 0
    if source.has("shapes.txt"):
        with source.lines("shapes.txt") as lines:
            shapes = ShapeReader(Table("shapes.txt", lines, SHAPE_COLUMNS), report)
            stored = feed.insert("gtfs_shapes", shapes.rows())
        shape_ids, shape_points = shapes.shape_ids, shapes.points
        if stored < shapes.points:
            report.error(
                "duplicate_key",
                "shapes.txt",
                None,
                "shape_pt_sequence",
                f"{shapes.points - stored} points repeat a (shape_id, shape_pt_sequence)",
            )

    with source.lines("trips.txt") as lines:
        table = Table("trips.txt", lines, TRIP_COLUMNS)
        trips = read_trips(table, report, routes, service_ids, shape_ids)
    feed.insert("gtfs_trips", trips.values())

    # Where a vehicle can call: stops and platforms (location_type 0) with their position.
    positions: dict[str, tuple[float, float] | None] = {}
    for sid, _, _, lat, lon, kind, _ in stops.values():
        positions[sid] = (lat, lon) if kind == 0 and lat is not None and lon is not None else None
    reader = _stop_times(feed, source, report, trips, positions)

    for file, count, what in (
        ("routes.txt", len(routes), "routes"),
        ("stops.txt", len(stops), "stops"),
        ("trips.txt", len(trips), "trips"),
        ("stop_times.txt", reader.count, "stop times"),
    ):
        if not count and not report.error_count:  # a timetable of nothing is no timetable
            report.error("empty_feed", file, None, None, f"no {what}: nothing to run")
    if not report.error_count:  # with rows refused, "unused" would only be noise
        _usage_warnings(report, routes, stops, trips, reader, shape_ids)
    first, last = _service_span(services.values(), dates)
    if last is not None and last < datetime.datetime.fromtimestamp(now, datetime.UTC).strftime(
        "%Y%m%d"
    ):
        report.warn("feed_expired", "calendar.txt", None, "end_date", f"service ended {last}")
    return {
        "agencies": len(agencies),
        "routes": len(routes),
        "stops": len(stops),
        "trips": len(trips),
        "stop_times": reader.count,
        "shapes": len(shape_ids or ()),
        "shape_points": shape_points,
        "services": len(service_ids),
        "calendar_dates": len(dates),
        "service_from": first,
        "service_until": last,
        "errors": report.error_count,
    }


def _stop_times(
    feed: FeedWriter,
    source: _Source,
    report: Report,
    trips: dict[str, Any],
    positions: dict[str, tuple[float, float] | None],
) -> StopTimeReader:
    """Store stop times; if the file does not keep each trip together, replay it grouped."""
    sub = Report(max_listed=report.max_listed)
    try:
        with feed.savepoint("stop_times"), source.lines("stop_times.txt") as lines:
            table = Table("stop_times.txt", lines, STOP_TIME_COLUMNS)
            reader = StopTimeReader(table, sub, trips, positions)
            feed.insert("gtfs_stop_times", reader.rows(table), ignore=False)
    except Unsorted:  # what it stored is undone
        sub = Report(max_listed=report.max_listed)
        reader = _grouped_replay(feed, source, sub, trips, positions)
    report.merge(sub)
    return reader


def _grouped_replay(
    feed: FeedWriter,
    source: _Source,
    report: Report,
    trips: dict[str, Any],
    positions: dict[str, tuple[float, float] | None],
) -> StopTimeReader:
    """Sort stop_times.txt by trip in a temporary table (bounded memory), then check it.

    Only the columns the checks read are staged, whatever the file's width."""
    with source.lines("stop_times.txt") as lines:
        table = Table("stop_times.txt", lines, STOP_TIME_COLUMNS)
        used = [table.require(c) for c in STOP_TIME_COLUMNS]
        i_dist = table.index("shape_dist_traveled")
        if i_dist is not None:
            used.append(i_dist)
        width = len(table.columns)
        # (line, *used values), sorted by trip, then by line: each trip's stop times together.
        lines_in = ((line, *(row[i] for i in used)) for line, row in table)

        def replayed(r: tuple[Any, ...]) -> tuple[int, list[str]]:
            row = [""] * width
            for i, value in zip(used, r[1:], strict=True):
                row[i] = value
            return r[0], row

        with feed.sorted_rows(len(used) + 1, lines_in, 1) as rows:
            reader = StopTimeReader(table, report, trips, positions)
            feed.insert("gtfs_stop_times", reader.rows(map(replayed, rows)), ignore=False)
    return reader


def _usage_warnings(
    report: Report,
    routes: dict[str, Any],
    stops: dict[str, Any],
    trips: dict[str, Any],
    reader: StopTimeReader,
    shape_ids: set[str] | None,
) -> None:
    """What the feed defines but never uses: harmless, often a sign of a stale export."""
    for tid in sorted(trips.keys() - reader.trips_seen):
        report.warn(
            "trip_without_stop_times", "trips.txt", None, "trip_id", f"{tid}: no stop times"
        )
    for rid in sorted(routes.keys() - {t[1] for t in trips.values()}):
        report.warn("route_without_trips", "routes.txt", None, "route_id", f"{rid}: no trips")
    for sid, stop in stops.items():
        if stop[5] == 0 and sid not in reader.stops_used:
            report.warn("unused_stop", "stops.txt", None, "stop_id", f"{sid}: no trip calls here")
    if shape_ids is not None:
        for shape in sorted(shape_ids - {t[3] for t in trips.values()}):
            report.warn("unused_shape", "shapes.txt", None, "shape_id", f"{shape}: no trip uses it")


def _service_span(
    services: Iterable[Service], dates: Iterable[tuple[str, str, int]]
) -> tuple[str | None, str | None]:
    days = [d for s in services for d in (s.start_date, s.end_date)]
    days += [d for _, d, kind in dates if kind == 1]
    return (min(days), max(days)) if days else (None, None)


def _check_timezones(report: Report, timezones: set[str]) -> None:
    import zoneinfo

    for tz in timezones:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            report.warn("bad_timezone", "agency.txt", None, "agency_timezone", f"unknown {tz!r}")
