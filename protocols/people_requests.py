"""Dispatchers' requests about people and the audit log (issue 18): part of
protocols/requests.py's `Request` union, kept here so that module stays small. Pure.

A person is a broker account on the city listener with a role at central (central/roles.py
says what each role may ask); an admin records roles (`SetRole`), anybody may list them
(`ListPeople`), and the audit log (`AuditLog`) is every change asked and every refusal.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from protocols.request_base import Records, RequestBase

__all__ = ["PEOPLE_REQUESTS", "ROLES", "AuditLog", "ListPeople", "Role", "SetRole"]

Role = Literal["admin", "dispatcher", "ads", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "dispatcher", "ads", "viewer")
Account = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]  # topics.check_user


class SetRole(RequestBase, tag="set_role", frozen=True, kw_only=True):
    """Give the account `name` its role at central, or take it (`none`): it may then ask
    nothing (an admin's request, central/roles.py)."""

    name: Account
    role: Role | Literal["none"]


class ListPeople(Records, tag="list_people", frozen=True, kw_only=True):
    """The accounts with a role: name, role, since when, recorded by whom."""


class AuditLog(Records, tag="audit_log", frozen=True, kw_only=True):
    """The audit log since `since` (unix seconds), oldest first; one account's with `user`."""

    user: Account | None = None
    since: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0


PEOPLE_REQUESTS: tuple[type[RequestBase], ...] = (SetRole, ListPeople, AuditLog)
