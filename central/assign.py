"""Assignments: central's desired state for a bus, checked against the feed, versioned, stored.

The service publishes the stored document (central/service/dispatch.py handles `Assign`).
"""

from __future__ import annotations

import time

import msgspec

from central.desired import update_desired
from central.errors import Refused
from central.messages import messages_for
from central.store import gtfs as gtfs_db
from central.store import timetables as tt_db
from central.store.db import CentralStore
from protocols.schemas import Assignment, DesiredState


class AssignmentError(Refused):
    """An assignment naming a trip, block or route that the imported GTFS feed lacks."""


def check_assignment(store: CentralStore, assignment: Assignment, bus: str | None = None) -> None:
    """Refuse what the timetable the bus will run does not know: the version published to
    it, if any (central/timetables.py), else the imported feed; without either, anything
    goes."""
    version = None if bus is None else tt_db.bus_timetable(store, bus)
    if version is not None:
        _check_in_version(store, assignment, bus or "", version)
        return
    if gtfs_db.feed_info(store) is None:
        return
    if assignment.trip_id:
        trip = gtfs_db.trip(store, assignment.trip_id)
        if trip is None:
            raise AssignmentError(f"unknown trip {assignment.trip_id!r} (not in the GTFS feed)")
        if assignment.route_id and trip.route_id != assignment.route_id:
            raise AssignmentError(
                f"trip {trip.trip_id!r} runs on route {trip.route_id!r},"
                f" not {assignment.route_id!r}"
            )
    if assignment.block_id and not gtfs_db.block_routes(store, assignment.block_id):
        raise AssignmentError(f"unknown block {assignment.block_id!r} (not in the GTFS feed)")
    if assignment.route_id and not gtfs_db.route_exists(store, assignment.route_id):
        raise AssignmentError(f"unknown route {assignment.route_id!r} (not in the GTFS feed)")


def _check_in_version(store: CentralStore, assignment: Assignment, bus: str, version: int) -> None:
    where = f"not in timetable version {version}, the one published to {bus}"
    if assignment.trip_id:
        trip = tt_db.trip_item(store, version, assignment.trip_id)
        if trip is None:
            raise AssignmentError(f"unknown trip {assignment.trip_id!r} ({where})")
        if assignment.route_id and trip[0] != assignment.route_id:
            raise AssignmentError(
                f"trip {assignment.trip_id!r} runs on route {trip[0]!r},"
                f" not {assignment.route_id!r} (timetable version {version})"
            )
    if assignment.block_id and not tt_db.block_exists(store, version, assignment.block_id):
        raise AssignmentError(f"unknown block {assignment.block_id!r} ({where})")
    if assignment.route_id and not tt_db.item_exists(store, version, "route", assignment.route_id):
        raise AssignmentError(f"unknown route {assignment.route_id!r} ({where})")


def next_desired(
    store: CentralStore, bus: str, assignment: Assignment, now: float | None = None
) -> tuple[int, bytes]:
    """Store the bus's next desired document (the previous one with a new assignment).

    Its passenger messages follow the new assignment: route messages of the new route come,
    those of the old one go (central/messages.py).
    """
    now = time.time() if now is None else now
    routes = gtfs_db.routes_of(store, assignment)

    def change(doc: DesiredState) -> DesiredState:
        msgs = messages_for(store, bus, routes, now)
        return msgspec.structs.replace(doc, assignment=assignment, messages=msgs)

    return update_desired(store, bus, change)
