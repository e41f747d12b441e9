"""Diversions: stored at central, delivered through the desired state of every bus on the route.

Dispatch defines a diversion for a route, or some of its trips, with a validity window: stops
skipped, temporary stops, and the detour path (`busfleet central divert create`). Every bus
whose desired assignment is on that route carries it in `DesiredState.diversions` (a
`protocols.schemas.Diversion`), ahead of its window. The bus applies it from `valid_from` to
`valid_to` by its own clock (`onboard/journey/diversion.py`), so service returns to the timetable on
time even with the uplink down.

Central keeps the documents right: `DiversionSync.step` (run every few seconds by the
service's periodic sync, central/service/sync.py, which publishes what it returns) marks
diversions past their end expired and drops them from the documents, and gives a bus the
diversions of its route after its assignment changed (an assignment bumps the document's
version, which is all the sync looks at while the set of diversions stays the same). A
bus's routes: its assignment's route_id, its trip's and its block's routes (the last two
need an imported timetable).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from central.desired import Published, update_desired
from central.errors import Refused
from central.store import diversions as diversion_db
from central.store import gtfs as gtfs_db
from central.store.db import CentralStore
from protocols import codec
from protocols.errors import CodecError
from protocols.schemas import DesiredState, Diversion

__all__ = [
    "SYNC_S",
    "DiversionError",
    "DiversionRecord",
    "DiversionSync",
    "cancel_diversion",
    "create_diversion",
    "current_diversions",
    "list_diversions",
    "parse_path",
    "parse_temp_stop",
    "route_label",
    "skipped_stops",
    "stop_label",
]

log = logging.getLogger("busfleet.central.diversions")

ACTIVE, EXPIRED, CANCELLED = "active", "expired", "cancelled"
MAX_NOTICE = 1000
SYNC_S = 5.0


class DiversionError(Refused):
    """A diversion that cannot be created or cancelled as asked (the text says why)."""


@dataclass(frozen=True, slots=True)
class DiversionRecord:
    diversion: Diversion
    created: float
    status: str  # active, expired, cancelled
    ended: float | None

    def current(self, now: float) -> bool:
        """Still to be carried by the buses: active and not past its end (it may not have
        begun: buses get it ahead of its window)."""
        end = self.diversion.valid_to
        return self.status == ACTIVE and (end is None or end > now)


def _record(row: Any) -> DiversionRecord | None:
    body, created, status, ended = row
    try:
        diversion = codec.decode(Diversion, bytes(body))
    except CodecError:
        return None
    return DiversionRecord(diversion, float(created), str(status), ended)


def list_diversions(store: CentralStore, *, status: str | None = None) -> list[DiversionRecord]:
    """Diversions, newest first; only those of `status` if given."""
    found = (_record(r) for r in diversion_db.diversion_rows(store, status=status))
    return [r for r in found if r is not None]


def current_diversions(store: CentralStore, now: float) -> list[Diversion]:
    """The diversions buses carry now (begun or not), by id."""
    records = list_diversions(store, status=ACTIVE)
    return sorted((r.diversion for r in records if r.current(now)), key=lambda d: d.id)


def _check(store: CentralStore, d: Diversion, now: float) -> None:
    if not d.route_id:
        raise DiversionError("give the route")
    if not (d.skip or d.temp_stops or d.path):
        raise DiversionError("a diversion needs skipped stops, temporary stops or a path")
    if len(d.path) == 1:
        raise DiversionError("a path needs at least two points: where it leaves and rejoins")
    if max(len(d.notice_de), len(d.notice_en)) > MAX_NOTICE:
        raise DiversionError(f"a notice may have at most {MAX_NOTICE} characters")
    if any(not ts.name.strip() for ts in d.temp_stops):
        raise DiversionError("a temporary stop needs a name")
    if d.valid_to is not None and d.valid_to <= now:
        raise DiversionError("the diversion would already be over (until is past)")
    if d.valid_from is not None and d.valid_to is not None and d.valid_to <= d.valid_from:
        raise DiversionError("until must come after from")
    if gtfs_db.feed_info(store) is None:
        return  # nothing to check names against
    if not gtfs_db.route_exists(store, d.route_id):
        raise DiversionError(f"route {d.route_id!r} is not in the imported GTFS feed")
    for trip_id in d.trips:
        info = gtfs_db.trip(store, trip_id)
        if info is None or info.route_id != d.route_id:
            raise DiversionError(f"trip {trip_id!r} is not a trip of route {d.route_id!r}")
    served = gtfs_db.route_stops(store, d.route_id)
    for stop_id in d.skip:
        if stop_id not in served:
            raise DiversionError(f"stop {stop_id!r} is not served by route {d.route_id!r}")


def create_diversion(
    store: CentralStore,
    *,
    route_id: str,
    trips: Sequence[str] = (),
    skip: Sequence[str] = (),
    temp_stops: Sequence[tuple[str, float, float]] = (),
    path: Sequence[tuple[float, float]] = (),
    valid_from: float | None = None,
    valid_to: float | None = None,
    notice_de: str = "",
    notice_en: str = "",
    now: float | None = None,
) -> tuple[Diversion, Published]:
    """Store a diversion and put it into the desired state of every bus on its route.

    Returns the diversion and the desired documents to publish. DiversionError if invalid.
    """
    now = time.time() if now is None else now
    div_id = f"d-{uuid.uuid4().hex[:10]}"
    try:
        diversion = msgspec.convert(
            {
                "id": div_id,
                "route_id": route_id.strip(),
                "trips": list(dict.fromkeys(trips)),
                "skip": list(dict.fromkeys(skip)),
                "temp_stops": [
                    {"id": f"{div_id}-t{i + 1}", "name": name.strip(), "lat": lat, "lon": lon}
                    for i, (name, lat, lon) in enumerate(temp_stops)
                ],
                "path": [list(p) for p in path],
                "valid_from": valid_from,
                "valid_to": valid_to,
                "notice_de": notice_de.strip(),
                "notice_en": notice_en.strip(),
            },
            Diversion,
        )
    except msgspec.ValidationError as exc:
        raise DiversionError(str(exc)) from exc
    _check(store, diversion, now)
    with store.transaction():
        diversion_db.add_diversion(
            store,
            {
                "id": div_id,
                "created": now,
                "route_id": diversion.route_id,
                "body": codec.encode(diversion),
                "valid_from": valid_from,
                "valid_to": valid_to,
                "status": ACTIVE,
            },
        )
        published = DiversionSync(store).step(now)
    log.info("diversion %s of route %s to %d buses", div_id, route_id, len(published))
    return diversion, published


def cancel_diversion(store: CentralStore, diversion_id: str, now: float | None = None) -> Published:
    """End a diversion now: the buses go back to the timetable. Returns the documents to
    publish; DiversionError if there is no such diversion in force."""
    now = time.time() if now is None else now
    with store.transaction():
        if not diversion_db.end_diversion(store, diversion_id, CANCELLED, now, was=ACTIVE):
            status = diversion_db.diversion_status(store, diversion_id)
            if status is None:
                raise DiversionError(f"no diversion {diversion_id!r}")
            raise DiversionError(f"{diversion_id} is {status} already")
        return DiversionSync(store).step(now)


class DiversionSync:
    """Keeps every desired document's diversions equal to those of its routes in force.

    Cheap between changes: with the same diversions in force as last time, only documents
    whose version moved (a new assignment) are looked at.
    """

    def __init__(self, store: CentralStore) -> None:
        self.store = store
        self._versions: dict[str, int] = {}
        self._ids: frozenset[str] | None = None

    def step(self, now: float) -> Published:
        """Expire what ended, then fix the documents that need it; returns them to publish.

        Reads first and takes SQLite's write lock only when something is to be written, so
        that the ingest's commits are not held up every few seconds for nothing.
        """
        store = self.store
        if diversion_db.due_diversions(store, ACTIVE, now):
            with store.transaction():
                diversion_db.expire_diversions(store, now, was=ACTIVE, status=EXPIRED)
        current = current_diversions(store, now)
        ids = frozenset(d.id for d in current)
        versions = store.desired_versions()
        full = ids != self._ids
        stale = []
        for bus, version in versions.items():
            if full or self._versions.get(bus) != version:
                stored = store.desired(bus)
                if stored is not None and _wrong(
                    store, codec.decode(DesiredState, stored[1]), current
                ):
                    stale.append(bus)

        def put(doc: DesiredState) -> DesiredState:
            return msgspec.structs.replace(doc, diversions=_wanted(store, doc, current))

        published: Published = {}
        if stale:
            with store.transaction():  # each document read again under the lock
                for bus in stale:
                    published[bus] = update_desired(store, bus, put)
                    versions[bus] = published[bus][0]
            log.info("diversions: %d buses updated", len(published))
        self._versions, self._ids = versions, ids
        return published


def _wanted(store: CentralStore, doc: DesiredState, current: list[Diversion]) -> list[Diversion]:
    routes = gtfs_db.routes_of(store, doc.assignment)
    return [d for d in current if d.route_id in routes]


def _wrong(store: CentralStore, doc: DesiredState, current: list[Diversion]) -> bool:
    return doc.diversions != _wanted(store, doc, current)


def skipped_stops(
    store: CentralStore,
    diversions: Iterable[Diversion],
    trip_id: str,
    route_id: str | None,
    now: float,
) -> list[tuple[str, int | None]]:
    """(stop_id, stop_sequence) of the trip's stops that diversions in their window skip now,
    in stop order. Without the trip in the imported timetable: the listed stops, no order."""
    info = gtfs_db.trip(store, trip_id)
    route = info.route_id if info is not None else route_id
    skip: set[str] = set()
    for d in diversions:
        if d.route_id != route or (d.trips and trip_id not in d.trips):
            continue
        if (d.valid_from is None or d.valid_from <= now) and (
            d.valid_to is None or now < d.valid_to
        ):
            skip.update(d.skip)
    if not skip:
        return []
    if info is None:
        return [(s, None) for s in sorted(skip)]
    return [(s, q) for s, q in gtfs_db.trip_calls(store, trip_id) if s in skip]


def parse_temp_stop(text: str) -> tuple[str, float, float]:
    """'name,lat,lon' (the name may contain commas); DiversionError otherwise."""
    name, _, rest = text.rpartition(",")
    name, _, lat = name.rpartition(",")
    try:
        point = (float(lat), float(rest))
    except ValueError:
        raise DiversionError(f"a temporary stop is 'name,lat,lon', not {text!r}") from None
    if not name.strip():
        raise DiversionError(f"a temporary stop is 'name,lat,lon', not {text!r}")
    return name.strip(), *point


def parse_path(text: str) -> list[tuple[float, float]]:
    """'lat,lon;lat,lon;...' (at least two points); DiversionError otherwise."""
    points = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        lat, sep, lon = part.partition(",")
        try:
            points.append((float(lat), float(lon)))
        except ValueError:
            raise DiversionError(f"a path point is 'lat,lon', not {part!r}") from None
        if not sep:
            raise DiversionError(f"a path point is 'lat,lon', not {part!r}")
    if len(points) < 2:
        raise DiversionError("a path needs at least two points")
    return points


def route_label(store: CentralStore, route_id: str) -> str | None:
    """The route's short name (else long name) in the imported timetable."""
    names = gtfs_db.route_names(store, route_id)
    return (names[0] or names[1] or None) if names else None


def stop_label(store: CentralStore, stop_id: str) -> str | None:
    """The stop's name in the imported timetable."""
    return gtfs_db.stop_name(store, stop_id) or None
