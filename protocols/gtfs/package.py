"""A timetable package: what a bus needs of a GTFS feed, as one content-addressed zip (issue 14).

Central builds it from a feed it imported (`build_package` takes the text of each GTFS file the
bus reads) and publishes it as a `TimetableRef` (protocols/schemas.py): the bus downloads it,
checks its sha256 and reads it with `read_package`, which is `parse_feed` on the files inside,
the same code that reads a local feed. The zip is normalised (files in a fixed order, a fixed
timestamp, LZMA), so the same timetable always gives the same bytes and the
same hash: publishing it twice costs a bus nothing.

Reading is bounded: only the GTFS files a bus reads are taken, each at most MAX_FILE_BYTES
and all together at most MAX_TOTAL_BYTES once decompressed (a package is data from the
network, whoever signed for it).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping

from protocols.errors import GtfsError
from protocols.gtfs.feed import ARCHIVE_ERRORS, OPTIONAL_FILES, REQUIRED_FILES, Feed, parse_feed

__all__ = ["FILES", "MAX_FILE_BYTES", "build_package", "package_sha256", "read_package"]

FILES = (*REQUIRED_FILES, *OPTIONAL_FILES)
MAX_FILE_BYTES = 1 << 30  # 1 GiB of one file's text: 2 million stop times are ~150 MB
MAX_TOTAL_BYTES = 2 << 30
_STAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: the same bytes every time
# LZMA, not the Deflate of most GTFS zips: a bus fetches the package over a cellular link, and
# the Cairns feed packs into 139 kB instead of 405 kB (2.9 times less) for about a second more
# at central's import (outside the database's write lock) and a few ms more on the bus
# (bench/timetable.py). Python's zipfile reads it; so do 7-Zip and libarchive (bsdtar).
COMPRESSION = zipfile.ZIP_LZMA


def build_package(files: Mapping[str, str]) -> bytes:
    """The package of these GTFS files (name -> text); names outside FILES are refused."""
    unknown = sorted(set(files) - set(FILES))
    if unknown:
        raise GtfsError(f"a timetable package holds GTFS files only, not {unknown[0]}")
    missing = [n for n in REQUIRED_FILES if n not in files]
    if missing:
        raise GtfsError(f"a timetable package needs {missing[0]}", file=missing[0])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", COMPRESSION) as zf:
        for name in FILES:
            if name in files:
                info = zipfile.ZipInfo(name, date_time=_STAMP)
                info.compress_type = COMPRESSION
                info.external_attr = 0o644 << 16
                zf.writestr(info, files[name].encode("utf-8"))
    return out.getvalue()


def package_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_package(data: bytes) -> Feed:
    """The feed in a package; GtfsError if it is not one (or too big once decompressed)."""
    texts: dict[str, str] = {}
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if info.filename not in FILES or info.filename in texts:
                    raise GtfsError(f"a timetable package does not hold {info.filename!r}")
                if info.file_size > MAX_FILE_BYTES or total + info.file_size > MAX_TOTAL_BYTES:
                    raise GtfsError(f"{info.filename} is too big for a timetable package")
                with zf.open(info) as member:
                    raw = member.read(MAX_FILE_BYTES + 1)  # the header's size may lie
                if len(raw) > MAX_FILE_BYTES:
                    raise GtfsError(f"{info.filename} is too big for a timetable package")
                total += len(raw)
                texts[info.filename] = raw.decode("utf-8")
    except ARCHIVE_ERRORS as exc:
        raise GtfsError(f"not a timetable package: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise GtfsError(f"a file of the timetable package is not UTF-8: {exc}") from exc
    return parse_feed(texts)
