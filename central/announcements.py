"""Live announcements from city hall (issue 17): a dispatcher's text, spoken and shown now on
the buses it names.

Each targeted bus gets one `Announce` command (protocols/bus_commands.py) with its own id
(the announcement's id, "-", a number) and the announcement's expiry: a live announcement
is of its moment, so a bus away longer than the ttl never gets it; the command expires at
central (and the bus, should it still see it, answers "expired" and says nothing). The
`commands` table tracks each: sent, ok (delivered: the bus took it to speak and show),
failed, expired; `status` reads them back.

Targets, as a timetable publication takes them (central/groups.py: all, a bus id, bus:B,
group:G), and `route:R`: the buses whose current assignment is on route R, by the rule
passenger messages follow (central/messages.py `recipients`): a bus's desired assignment
(what the dispatcher decided: its route, its trip's route, or its block's trips' routes)
and, for a bus without one, the route it reports in fleet state. The desired assignment
comes first because it is known at central for every bus, online or not, and is what the
bus drives once it is there; the reported route covers the buses that match their route on
board without one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from central.errors import Refused
from central.groups import expand_targets
from central.messages import ACTIVE, Message, recipients
from central.store.announcements import PREFIX_LEN, announcement_commands
from central.store.db import CentralStore
from protocols import codec
from protocols.requests import Announce, command_args
from protocols.schemas import Command

__all__ = [
    "DEFAULT_TTL_S",
    "MAX_TEXT",
    "STATUS",
    "AnnouncementError",
    "Sent",
    "announce",
    "announcement_buses",
    "status",
]

MAX_TEXT = 500  # characters per language: what the bus takes (bus_commands.DriverText)
DEFAULT_TTL_S = 120.0  # a bus away longer never hears it: it would be stale
NAME = str(Announce.__struct_config__.tag)
STATUS = {"sent": "sent", "ok": "delivered", "failed": "failed", "expired": "expired"}


class AnnouncementError(Refused):
    """An announcement central will not send; the message says why."""


@dataclass(frozen=True, slots=True)
class Sent:
    """An announcement sent: its id, expiry and one command per bus (to publish)."""

    id: str
    expires: float
    commands: tuple[tuple[str, Command], ...]  # (bus, command), by bus


def announcement_buses(store: CentralStore, targets: list[str]) -> list[str]:
    """The buses of `targets` (all, a bus id, bus:B, group:G, route:R), sorted, each once."""
    given = [t.strip() for t in targets if t.strip()]
    routes = [t for t in given if t.startswith("route:")]
    others = [t for t in given if not t.startswith("route:")]
    for route in routes:
        if not route.removeprefix("route:").strip():
            raise AnnouncementError("route:R needs a route id")
    buses = set(expand_targets(store, others)) if others or not routes else set()
    if routes:
        # The passenger messages' rule of who is on a route now (see the docstring).
        rule = Message("", 0.0, "", "", 0, tuple(routes), None, None, ACTIVE, None)
        buses |= set(recipients(store, rule))
    return sorted(buses)


def announce(
    store: CentralStore,
    targets: list[str],
    de: str,
    en: str = "",
    *,
    ttl_s: float = DEFAULT_TTL_S,
    now: float,
) -> Sent:
    """Store one `Announce` command per targeted bus; refused: no German text, a text too
    long, a bad target, or targets that name no bus now."""
    de, en = de.strip(), en.strip()
    if not de:
        raise AnnouncementError("an announcement needs a German text (--de)")
    for lang, text in (("de", de), ("en", en)):
        if len(text) > MAX_TEXT:
            raise AnnouncementError(f"the {lang} text: {len(text)} characters, {MAX_TEXT} at most")
    if not 0 < ttl_s <= 3600:
        raise AnnouncementError("the ttl is 1 s to an hour: a live announcement is of its moment")
    buses = announcement_buses(store, targets)
    if not buses:
        raise AnnouncementError(f"{', '.join(targets)}: no bus is there now")
    ann = uuid.uuid4().hex[: PREFIX_LEN - 1]
    # `text` as well: an agent older than issue 17 reads only that (it shows the German).
    args = command_args(Announce(de=de, en=en or None, text=de, announcement=ann))
    expires = now + ttl_s
    sent: list[tuple[str, Command]] = []
    with store.transaction():
        for n, bus in enumerate(buses):
            cmd = Command(id=f"{ann}-{n}", name=NAME, t=now, expires=expires, args=args)
            store.add_command(cmd.id, bus, NAME, codec.encode_json(args), now, expires)
            sent.append((bus, cmd))
    return Sent(ann, expires, tuple(sent))


def status(store: CentralStore, announcement: str) -> list[dict[str, Any]]:
    """Per bus the announcement went to: its command, sent, expires, status (sent,
    delivered, failed, expired), reason and when it was answered. Refused if none."""
    ann = announcement.strip()
    rows = announcement_commands(store, f"{ann}-") if len(ann) == PREFIX_LEN - 1 else []
    if not rows:
        raise AnnouncementError(f"no announcement {ann!r}")
    return [
        {
            "bus": r["bus"],
            "command": r["id"],
            "status": STATUS.get(r["status"], r["status"]),
            "sent": r["sent"],
            "expires": r["expires"],
            "answered": r["answered"],
            "reason": r["reason"],
        }
        for r in rows
    ]
