"""Dispatchers' requests about people and the audit log (issue 18), as timetable_requests.py.

`SetRole` records an account's role (central/roles.py has the rules: an admin's request, the
first role recorded an admin's, never the last admin taken); `ListPeople` answers the accounts
with a role as records; `AuditLog` the audit log since a time, oldest first, optionally one
account's (central/store/audit.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from central import roles
from central.config import CentralConfig
from central.store import audit
from central.store.db import CentralStore
from protocols.people_requests import AuditLog, ListPeople, SetRole
from protocols.requests import Record, RequestBase
from protocols.schemas import Scalar

__all__ = ["handlers"]

Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]
Handler = Callable[[Any, Any], Answer]
Page = Callable[[Any, list[Record], int], Answer]


class Context(Protocol):
    """What these handlers use of dispatch's `Ctx`."""

    store: CentralStore
    user: str
    now: float


def handlers(config: CentralConfig, page: Page) -> dict[type[RequestBase], Handler]:
    """The handlers of this module's requests, for dispatch's table."""

    def set_role(c: Context, r: SetRole) -> Answer:
        said = roles.set_role(c.store, c.user, r.name, r.role, c.now)
        return {"name": r.name, "role": r.role, "said": said}, {}

    def list_people(c: Context, r: ListPeople) -> Answer:
        return page(c, audit.people(c.store), r.offset)

    def audit_log(c: Context, r: AuditLog) -> Answer:
        return page(c, audit.audit_rows(c.store, r.since, r.user), r.offset)

    return {SetRole: set_role, ListPeople: list_people, AuditLog: audit_log}
