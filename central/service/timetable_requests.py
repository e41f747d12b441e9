"""Dispatchers' requests about timetable versions and groups of buses (issue 14).

Handlers in the shape of central/service/dispatch.py's table, `(context, request) ->
(result, tables)`, kept here so that dispatch.py stays a table; the rules are
central/timetables.py's and central/groups.py's. The context is dispatch's `Ctx` (this module
names only what it uses, so that it need not import dispatch), and the tools' read-only
requests are paged by dispatch's own `page` function, handed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from central.config import CentralConfig
from central.desired import Published
from central.errors import Refused
from central.groups import delete_group, get_group, list_groups, set_group
from central.store import timetables as tt_db
from central.store.db import CentralStore
from central.timetables import catch_up, list_versions, publish, show_version
from protocols.requests import (
    DeleteGroup,
    ListGroups,
    ListTimetables,
    PublishTimetable,
    Record,
    RequestBase,
    SetGroup,
    ShowGroup,
    ShowTimetable,
)
from protocols.schemas import Scalar

__all__ = ["Context", "handlers"]

Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]


class Context(Protocol):
    """What these handlers use of dispatch's `Ctx`."""

    store: CentralStore
    user: str
    now: float
    desired: Published
    records: list[Record]


Page = Callable[[Any, list[Record], int], Answer]
Handler = Callable[[Any, Any], Answer]


def handlers(config: CentralConfig, page: Page) -> dict[type[RequestBase], Handler]:
    """The handlers of this module's requests, for dispatch's table."""

    def publish_timetable(c: Context, r: PublishTimetable) -> Answer:
        published = publish(
            c.store, config, r.version, r.to, valid_from=r.valid_from, now=c.now, by=c.user
        )
        c.desired.update(published)
        buses: list[dict[str, Scalar]] = [
            {"bus": b, "version": v} for b, (v, _) in sorted(published.items())
        ]
        result: dict[str, Scalar] = {"timetable": r.version, "buses": len(published)}
        return result, {"buses": buses}

    def list_timetables(c: Context, r: ListTimetables) -> Answer:
        on = tt_db.buses_per_version(c.store)
        records: list[Record] = [
            {**dataclasses.asdict(v), "buses": on.get(v.version, 0)} for v in list_versions(c.store)
        ]
        return page(c, records, r.offset)

    def show_timetable(c: Context, r: ShowTimetable) -> Answer:
        return page(c, [show_version(c.store, r.version, r.max_listed)], r.offset)

    def set_group_(c: Context, r: SetGroup) -> Answer:
        group = set_group(c.store, r.name, r.buses, c.now)
        given = catch_up(c.store, group.buses)  # the group's newer timetable, if any
        c.desired.update(given)
        return {"group": group.name, "buses": len(group.buses), "given_timetable": len(given)}, {}

    def delete_group_(c: Context, r: DeleteGroup) -> Answer:
        delete_group(c.store, r.name)
        return {"group": r.name.strip(), "deleted": True}, {}

    def list_groups_(c: Context, r: ListGroups) -> Answer:
        return page(c, [_group(g) for g in list_groups(c.store)], r.offset)

    def show_group(c: Context, r: ShowGroup) -> Answer:
        group = get_group(c.store, r.name)
        if group is None:
            raise Refused(f"no group {r.name.strip()!r}")
        return page(c, [_group(group)], r.offset)

    return {
        PublishTimetable: publish_timetable,
        ListTimetables: list_timetables,
        ShowTimetable: show_timetable,
        SetGroup: set_group_,
        DeleteGroup: delete_group_,
        ListGroups: list_groups_,
        ShowGroup: show_group,
    }


def _group(group: Any) -> Record:
    return {"name": group.name, "updated": group.updated, "buses": list(group.buses)}
