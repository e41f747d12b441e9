"""Groups of buses at central: a depot, a vehicle type, a route family, named once.

A group is a name and its buses (`set_group` replaces the members whole). Other features
name their targets in one vocabulary and call `expand_targets` to get bus ids:

    all        every bus central knows (seen on the broker, or with a desired document)
    bus:B, B   the bus B (known or not: its retained desired document waits for it)
    group:G    the buses of group G now (refused if there is no such group)

Publishing a timetable (central/timetables.py) and assigning a playlist take these targets;
passenger messages take `group:G` beside their own `route:R` (central/service/dispatch.py
expands the group into its buses when the message is sent).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from central.errors import Refused
from central.store import groups as groups_db
from central.store.db import CentralStore
from protocols import topics
from protocols.errors import ProtocolError

__all__ = [
    "Group",
    "GroupError",
    "check_group_name",
    "delete_group",
    "expand_targets",
    "get_group",
    "group_members_as_buses",
    "list_groups",
    "selector",
    "set_group",
    "target_buses",
]

GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_MEMBERS = 10_000


class GroupError(Refused):
    """A group or a target that central will not take; the message says why."""


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    updated: float
    buses: tuple[str, ...]


def check_group_name(name: str) -> str:
    name = name.strip()
    if not GROUP_NAME.fullmatch(name):
        raise GroupError(f"a group name is 1 to 64 letters, digits, '_', '.' or '-' (not {name!r})")
    return name


def _bus(text: str) -> str:
    try:
        return topics.check_bus_id(text.strip())
    except ProtocolError as exc:
        raise GroupError(str(exc)) from None


def set_group(
    store: CentralStore, name: str, buses: Iterable[str], now: float | None = None
) -> Group:
    """Create the group or replace its members; at least one bus."""
    name = check_group_name(name)
    members = sorted({_bus(b) for b in buses if b.strip()})
    if not members:
        raise GroupError(f"group {name!r}: name at least one bus (to remove it: group delete)")
    if len(members) > MAX_MEMBERS:
        raise GroupError(f"group {name!r}: at most {MAX_MEMBERS} buses")
    now = time.time() if now is None else now
    groups_db.set_group(store, name, members, now)
    return Group(name, now, tuple(members))


def delete_group(store: CentralStore, name: str) -> None:
    if not groups_db.delete_group(store, check_group_name(name)):
        raise GroupError(f"no group {name!r}")


def get_group(store: CentralStore, name: str) -> Group | None:
    for group in list_groups(store):
        if group.name == name.strip():
            return group
    return None


def list_groups(store: CentralStore) -> list[Group]:
    return [Group(n, u, tuple(b)) for n, u, b in groups_db.all_groups(store)]


def expand_targets(store: CentralStore, targets: Iterable[str]) -> list[str]:
    """The bus ids of `targets` ("all", "bus:B" or a bare bus id, "group:G"), sorted, each
    once. Refused: an unknown group, a kind of target that names no buses, no target."""
    buses: set[str] = set()
    given = [t.strip() for t in targets if t.strip()]
    if not given:
        raise GroupError("give at least one target: all, a bus id, bus:B or group:G")
    for target in given:
        buses |= set(target_buses(store, target))
    return sorted(buses)


def target_buses(store: CentralStore, target: str) -> list[str]:
    """The buses of one target (see `expand_targets`)."""
    target = target.strip()
    if target == "all":
        return groups_db.known_buses(store)
    kind, sep, value = target.partition(":")
    if not sep:
        return [_bus(target)]
    if kind == "bus":
        return [_bus(value)]
    if kind == "group":
        members = groups_db.members(store, check_group_name(value))
        if members is None:
            raise GroupError(f"no group {value.strip()!r} (see `busfleet central group list`)")
        return members
    raise GroupError(f"unknown target {target!r}: all, a bus id, bus:B or group:G")


def selector(store: CentralStore, targets: Iterable[str]) -> Callable[[str], bool]:
    """Whether `targets` select a bus now, as a test to run on many buses (the groups' members
    read once); a group deleted since, or a target that is no longer valid, selects nobody."""
    chosen: set[str] = set()
    for target in targets:
        target = target.strip()
        if target == "all":
            return lambda _bus: True
        kind, sep, value = target.partition(":")
        if kind == "group" and sep:
            chosen.update(groups_db.members(store, value.strip()) or [])
        elif kind == "bus" and sep:
            chosen.add(value.strip())
        elif not sep:
            chosen.add(target)
    return chosen.__contains__


def group_members_as_buses(store: CentralStore, targets: Iterable[str]) -> list[str]:
    """`targets` with each "group:G" replaced by "bus:B" for its buses now (others as given):
    for features with their own target kinds (a passenger message's "route:R")."""
    out: list[str] = []
    for target in targets:
        if target.strip().startswith("group:"):
            out.extend(f"bus:{b}" for b in target_buses(store, target))
        else:
            out.append(target)
    return out
