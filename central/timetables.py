"""Timetable versions at central: recorded at each import, compared, published to buses.

Every successful `busfleet central import-gtfs` (central/gtfs_import.py) records a version
(`record_version`): a number, when, from where, the import's summary, and the package a bus
downloads: `protocols.gtfs.package.build_package` of the feed's files (their text as
imported, in the encoding the importer found), written by its sha256 under central's
timetable directory (`timetable_dir` in central.toml; default `timetables/` beside the
database), through a temporary file, fsync and rename, so that a file under a hash is whole.
Central serves it over HTTP at `/timetables/{sha256}.zip` (central/http/timetables.py),
with Range requests: a bus resumes a download a tunnel cut.

Beside the row, a version keeps per route, stop and trip its id and a fingerprint of what a
bus would see of it (a trip's covers its headsign, block, shape and every call's stop and
times); the stop times themselves stay in the current feed's tables only. That is enough to
check an assignment against the version a bus runs (central/assign.py) and to say what
changed between two versions (`show_version`): routes, stops and trips added, removed,
changed.

Publishing (`publish`) writes each targeted bus's next desired document with a
`TimetableRef` (version, sha256, size, url, valid_from) through the one desired writer
(central/desired.py); every later document of the bus keeps it, since each writer changes
only its own field. A publication is stored with its targets ("all", a bus, a group:
central/groups.py), so that a bus central first hears of later gets the newest publication
that covers it (`newcomers`, run by the service's periodic sync), and a bus added to a group
gets the group's publication if it is newer than the bus's own (`catch_up`, when the group is
set). A bus's timetable is never taken away: leaving a group, it keeps what it runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from central.config import CentralConfig
from central.desired import Published, update_desired
from central.errors import Refused
from central.groups import expand_targets, selector
from central.operator_files import write_durably
from central.store import timetables as tt_db
from central.store.backend import is_postgres_url
from central.store.db import CentralStore
from protocols import codec
from protocols.gtfs.package import package_sha256
from protocols.schemas import DesiredState, TimetableRef

__all__ = [
    "TimetableError",
    "VersionInfo",
    "catch_up",
    "default_root",
    "list_versions",
    "newcomers",
    "package_path",
    "publish",
    "record_items",
    "record_version",
    "show_version",
    "timetable_root",
    "timetable_url_for",
]

MAX_LISTED = 20  # ids listed per kind of change in `show_version`


class TimetableError(Refused):
    """A timetable request central will not carry out; the message says why."""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    imported: float
    source: str
    summary: dict[str, Any]
    sha256: str
    size: int


def _info(row: dict[str, Any]) -> VersionInfo:
    return VersionInfo(**{**row, "summary": codec.decode_json(row["summary"])})


# -- where packages live and where buses fetch them ----------------------------------------------
def timetable_root(config: CentralConfig) -> Path:
    """Central's timetable packages: `timetable_dir`, else `timetables/` beside the database
    (beside the media library, for a database in memory or on a PostgreSQL server)."""
    if config.timetable_dir:
        return Path(config.timetable_dir)
    no_file = config.db == ":memory:" or is_postgres_url(config.db)
    base = Path(config.media_dir) if no_file else Path(config.db)
    return base.resolve().parent / "timetables"


def default_root(store: CentralStore) -> Path | None:
    """Where an import without a configured directory keeps packages: beside the database
    (None for one in memory or on a server: the version is recorded, its package not kept;
    central and its tools pass `timetable_root`)."""
    if not store.shareable or store.backend != "sqlite":
        return None
    return Path(store.path).resolve().parent / "timetables"


def package_path(root: Path, sha256: str) -> Path:
    return root / f"{sha256}.zip"


def timetable_url_for(config: CentralConfig) -> str:
    """Where buses download packages: `timetable_url`, else central's own HTTP server, else
    "" (then nothing can be published)."""
    if config.timetable_url:
        return config.timetable_url.rstrip("/")
    if config.http_port:
        return f"http://{config.http_host}:{config.http_port}/timetables"
    return ""


def _write_package(root: Path, sha256: str, data: bytes) -> None:
    target = package_path(root, sha256)
    if target.is_file() and target.stat().st_size == len(data):
        return  # content-addressed: the same timetable imported again
    write_durably(target, data)


# -- recording a version at import -------------------------------------------------------------
def record_version(
    store: CentralStore,
    package: bytes,
    *,
    source: str,
    imported: float,
    summary: dict[str, Any],
    root: Path | None,
) -> VersionInfo:
    """Record the feed just loaded into the store's GTFS tables (in the import's transaction)
    as the next version; its `package` (`build_package` of the feed's files) is written under
    `root` (None: not kept)."""
    data = package
    sha = package_sha256(data)
    if root is not None:
        _write_package(root, sha, data)
    with store.transaction():
        version = tt_db.next_version(store)
        row = {
            "version": version,
            "imported": imported,
            "source": source,
            "summary": codec.encode_json(summary),
            "sha256": sha,
            "size": len(data),
        }
        tt_db.add_version(store, row)
    return _info(row)


def record_items(store: CentralStore, version: int) -> bool:
    """Record the routes, stops and trips of `version` with their fingerprints, from the feed
    tables; run after the import's transaction, in one of its own, so that neither holds the
    write lock long (the service's writers wait on it). False, and nothing written, if the
    tables hold another version by now (an import that came in between records its own)."""
    with store.transaction():
        if tt_db.current_feed_version(store) != version:
            return False
        tt_db.add_items(store, version, _items(store))
    return True


def _fingerprint(values: Iterable[Any]) -> str:
    return hashlib.blake2b(msgspec.json.encode(list(values)), digest_size=8).hexdigest()


def _items(store: CentralStore) -> Iterator[tuple[str, str, str, str | None, str | None]]:
    """(kind, id, fingerprint, route_id, block_id) of every route, stop and trip."""
    for row in tt_db.feed_routes(store):
        yield "route", str(row[0]), _fingerprint(row[1:]), None, None
    for row in tt_db.feed_stops(store):
        yield "stop", str(row[0]), _fingerprint(row[1:]), None, None
    trip: tuple[Any, ...] | None = None
    calls: list[Any] = []
    for row in tt_db.feed_trip_calls(store):
        if trip is None or row[0] != trip[0]:
            if trip is not None:
                yield _trip_item(trip, calls)
            trip, calls = row[:7], []
        if row[7] is not None:
            calls.extend(row[7:])
    if trip is not None:
        yield _trip_item(trip, calls)


def _trip_item(trip: tuple[Any, ...], calls: list[Any]) -> tuple[str, str, str, str, str | None]:
    return "trip", str(trip[0]), _fingerprint([*trip[1:], *calls]), str(trip[1]), trip[6]


# -- reading versions ----------------------------------------------------------------------------
def list_versions(store: CentralStore) -> list[VersionInfo]:
    """Every version, oldest first."""
    return [_info(r) for r in tt_db.versions(store)]


def get_version(store: CentralStore, version: int) -> VersionInfo:
    row = tt_db.version_row(store, version)
    if row is None:
        raise TimetableError(
            f"no timetable version {version} (see `busfleet central timetable list`)"
        )
    return _info(row)


def show_version(store: CentralStore, version: int, limit: int = MAX_LISTED) -> dict[str, Any]:
    """A version and what changed against the one before it: per kind (routes, stops,
    trips) how many were added, removed and changed, and the first `limit` ids of each."""
    info = get_version(store, version)
    previous = tt_db.previous_version(store, version)
    record: dict[str, Any] = {
        "version": info.version,
        "imported": info.imported,
        "source": info.source,
        "sha256": info.sha256,
        "size": info.size,
        "summary": info.summary,
        "previous": previous,
    }
    for kind in tt_db.KINDS:
        if previous is None:  # the first version: everything is new
            changes = tt_db.changes(store, 0, version, kind, limit)
        else:
            changes = tt_db.changes(store, previous, version, kind, limit)
        record[f"{kind}s"] = {
            **{what: n for what, (n, _) in changes.items()},
            **{f"{what}_ids": ids for what, (_, ids) in changes.items()},
        }
    return record


# -- publishing ----------------------------------------------------------------------------------
def publish(
    store: CentralStore,
    config: CentralConfig,
    version: int,
    targets: Iterable[str],
    *,
    valid_from: float | None,
    now: float,
    by: str,
) -> Published:
    """Put `version` into the desired document of every targeted bus (see the module doc);
    returns the documents to publish. Refused: no such version, its package missing, no URL
    for buses to fetch it, an unknown group or a bad target."""
    info = get_version(store, version)
    path = package_path(timetable_root(config), info.sha256)
    if not path.is_file():
        raise TimetableError(
            f"the package of timetable version {version} is missing ({path}): import the feed again"
        )
    base = timetable_url_for(config)
    if not base:
        raise TimetableError(
            "buses could not download it: central serves no HTTP (set http_port or"
            " timetable_url in central.toml)"
        )
    given = [t.strip() for t in targets if t.strip()]
    buses = expand_targets(store, given)
    ref = TimetableRef(
        version=version,
        sha256=info.sha256,
        size=info.size,
        url=f"{base}/{info.sha256}.zip",
        valid_from=valid_from,
    )
    published: Published = {}
    with store.transaction():  # the publication and its documents, or nothing
        pub = tt_db.add_publication(
            store, version, codec.encode_json(given), msgspec.json.encode(ref), now, by
        )
        for bus in buses:
            published[bus] = _give(store, bus, ref, pub)
    return published


def _give(store: CentralStore, bus: str, ref: TimetableRef, publication: int) -> tuple[int, bytes]:
    def change(doc: DesiredState) -> DesiredState:
        return msgspec.structs.replace(doc, timetable=ref)

    with store.transaction():
        done = update_desired(store, bus, change)
        tt_db.set_bus_timetable(store, bus, ref.version, publication)
    return done


def newcomers(store: CentralStore) -> Published:
    """Buses central knows that were never given a timetable and that a publication covers
    (the newest that does): their next desired document, with it."""
    if not tt_db.publications(store):
        return {}
    return catch_up(store, tt_db.buses_without_timetable(store))


def catch_up(store: CentralStore, buses: Iterable[str]) -> Published:
    """Each of `buses` that a publication newer than its own covers now (a bus just added
    to a group, a newcomer) gets the newest such: their next desired documents."""
    buses = list(buses)
    pubs = tt_db.publications(store)  # newest first
    if not pubs or not buses:
        return {}
    chosen = [(pub, selector(store, codec.decode_json(pub["targets"]))) for pub in pubs]
    published: Published = {}
    for bus in buses:
        own = tt_db.bus_publication(store, bus) or 0
        for pub, selects in chosen:
            if int(pub["id"]) <= own:
                break
            if selects(bus):
                try:
                    ref = msgspec.json.decode(bytes(pub["ref"]), type=TimetableRef)
                except (msgspec.DecodeError, msgspec.ValidationError):  # a newer schema's
                    continue
                published[bus] = _give(store, bus, ref, int(pub["id"]))
                break
    return published
