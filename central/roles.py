"""Who may ask central what (issue 18): each broker account of the city listener has a role
at central, and every request is checked against it before it is carried out, then written
to the audit log (central/store/audit.py) when it changed something or was refused.

Roles and what they may send (`may`):
  viewer      the read-only requests: every `Records` request (lists, the plays report, the
              audit log...), `Detail`, `Listing`, `Report`, `ShowConfig`, `CommandAnswer`.
  ads         a viewer's, and the advertising: uploads, media imports, playlists (saved,
              imported) and assigning a playlist to buses (`AssignPlaylist`). Not a trip.
  dispatcher  everything operational: every request but recording roles (`SetRole`).
  admin       everything, and `SetRole`: who has which role.
An account without a role may ask nothing (the safe default: an account the broker knows is
not yet a person central knows). Software rollouts and agent settings stay with dispatchers,
as before roles; moving them to admin is one line here (ADMIN_ONLY).

How a role is given: `busfleet central people set NAME ROLE`, a request (`SetRole`) central
carries out; central alone writes its database (one writer, on either backend), and the
broker host that runs `busfleet bus service-user NAME --role ROLE` need not reach it (that
command makes the broker account and prints the `people set` line to run).

Before any role is recorded (a new installation, or one from before roles) nobody is checked:
every account acts as before. The first role recorded must be an admin's, and the last admin
cannot be removed or demoted, so nobody is locked out.

Audited: every request that is not read-only (whether it succeeded, was refused or failed) and
every refusal (a viewer's denied `Assign`, a read refused). Successful reads are not: the
dashboards ask for lists every few seconds, and a read changes nothing; uploads' pieces count
as reads (the import that uses them is audited).
"""

from __future__ import annotations

import json
import logging

from central.errors import Refused
from central.store import audit
from central.store.db import CentralStore
from protocols.people_requests import ROLES, SetRole
from protocols.request_base import Records, RequestBase
from protocols.requests import (
    AssignPlaylist,
    CommandAnswer,
    Detail,
    DispatchReply,
    ImportMedia,
    ImportPlaylist,
    Listing,
    Report,
    SavePlaylist,
    ShowConfig,
    Upload,
    described,
)

__all__ = ["ADMIN_ONLY", "ADS", "READ_ONLY", "ROLES", "check", "may", "record", "set_role"]

log = logging.getLogger("busfleet.central.roles")

READ_ONLY: tuple[type[RequestBase], ...] = (
    Records,
    Detail,
    Listing,
    Report,
    ShowConfig,
    CommandAnswer,
)
ADS: tuple[type[RequestBase], ...] = (
    Upload,
    ImportMedia,
    SavePlaylist,
    ImportPlaylist,
    AssignPlaylist,
)
ADMIN_ONLY: tuple[type[RequestBase], ...] = (SetRole,)
QUIET: tuple[type[RequestBase], ...] = (*READ_ONLY, Upload)  # not audited when answered ok
WHAT = {"viewer": "only read", "ads": "only read and run the advertising"}


def may(role: str | None, request: RequestBase) -> bool:
    """Whether an account of `role` (None: none recorded) may send `request`."""
    if role == "admin":
        return True
    if role == "dispatcher":
        return not isinstance(request, ADMIN_ONLY)
    if role == "ads":
        return isinstance(request, READ_ONLY + ADS)
    if role == "viewer":
        return isinstance(request, READ_ONLY)
    return False


def tag(request: RequestBase) -> str:
    return str(type(request).__struct_config__.tag)


def check(store: CentralStore, user: str, request: RequestBase) -> None:
    """Refused (with the role, and who can help) unless `user` may send `request`."""
    role = audit.role_of(store, user)
    if may(role, request) or (role is None and not audit.has_people(store)):
        return
    if role is None:
        raise Refused(
            f"the account {user!r} has no role at central, so it may ask nothing: an admin "
            f"gives it one (busfleet central people set {user} viewer|ads|dispatcher|admin)"
        )
    what = WHAT.get(role, "not record roles")
    raise Refused(f"{user} has the role {role} and may {what}: not {tag(request)}")


def record(store: CentralStore, user: str, request: RequestBase, reply: DispatchReply) -> None:
    """Write the request and its answer to the audit log, if it is audited (see above).
    A failure to write is logged, never raised: the answer goes out all the same."""
    if reply.ok and isinstance(request, QUIET):
        return
    answer = reply.error if not reply.ok else json.dumps(reply.result, sort_keys=True)
    try:
        audit.add_audit(
            store,
            t=reply.t,
            account=user,
            role=audit.role_of(store, user) or "",  # once the request is done
            request=tag(request),
            summary=described(request),
            ok=reply.ok,
            answer=answer,
        )
    except Exception:
        log.exception("could not write %s's %s to the audit log", user, tag(request))


def set_role(store: CentralStore, by: str, name: str, role: str, now: float) -> str:
    """Record `name`'s role (`none`: take it); what changed, said for the admin."""
    if role != "none" and role not in ROLES:
        raise Refused(f"unknown role {role!r}: {', '.join(ROLES)} or none")
    before = audit.role_of(store, name)
    admins = audit.admins(store)
    if not admins and role != "admin":
        raise Refused(
            "no admin is recorded yet: record one first (busfleet central people set NAME "
            "admin); until then nobody's role is checked"
        )
    if admins == [name] and role != "admin":
        raise Refused(f"{name} is the last admin: record another admin first")
    if role == "none":
        if not audit.remove_person(store, name):
            raise Refused(f"{name} has no role")
        return f"{name} has no role now (was {before})"
    audit.set_person(store, name, role, by, now)
    return f"{name} is a {role}" + (f" (was {before})" if before and before != role else "")
