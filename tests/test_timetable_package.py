"""protocols/gtfs/package.py: a timetable package is deterministic, reads back as the feed, and
refuses what is not one."""

from __future__ import annotations

import io
import zipfile

import pytest

from protocols.errors import GtfsError
from protocols.gtfs.feed import read_feed
from protocols.gtfs.package import FILES, build_package, package_sha256, read_package
from tests.conftest import DATA

CAIRNS = DATA / "gtfs" / "cairns_gtfs.zip"


def cairns_files() -> dict[str, str]:
    with zipfile.ZipFile(CAIRNS) as zf:
        names = {n.rsplit("/", 1)[-1]: n for n in zf.namelist()}
        return {n: zf.read(names[n]).decode("utf-8-sig") for n in FILES if n in names}


def test_the_same_timetable_gives_the_same_bytes_and_reads_back_as_the_feed() -> None:
    files = cairns_files()
    one, two = build_package(files), build_package(dict(reversed(list(files.items()))))
    assert one == two and package_sha256(one) == package_sha256(two)
    # What a bus downloads over the cellular link: well under the feed's own zip.
    assert len(one) < CAIRNS.stat().st_size / 2
    feed, original = read_package(one), read_feed(CAIRNS)
    assert feed.trips.keys() == original.trips.keys()
    assert feed.stops == original.stops
    trip = next(iter(original.trips))
    assert feed.trips[trip] == original.trips[trip]


def test_a_changed_timetable_gives_another_hash() -> None:
    files = cairns_files()
    renamed = dict(files, **{"stops.txt": files["stops.txt"].replace(",", ",X", 1)})
    assert package_sha256(build_package(files)) != package_sha256(build_package(renamed))


@pytest.mark.parametrize(
    "payload",
    [b"", b"PK\x03\x04 not a zip", b"\x00" * 100],
)
def test_what_is_not_a_package_is_refused(payload: bytes) -> None:
    with pytest.raises(GtfsError):
        read_package(payload)


def test_a_package_with_a_foreign_file_or_without_stop_times_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("../../etc/passwd", "x")
    with pytest.raises(GtfsError, match="does not hold"):
        read_package(out.getvalue())
    files = cairns_files()
    del files["stop_times.txt"]
    with pytest.raises(GtfsError, match="stop_times"):
        build_package(files)
    with pytest.raises(GtfsError, match="GTFS files only"):
        build_package({**cairns_files(), "evil.sh": "rm -rf /"})
