"""Passenger messages: stored at central, delivered through each targeted bus's desired state.

A message has German text (required) and English text, a priority (0 normal .. 9 urgent), a
validity window and targets: `all`, `route:R` or `bus:B` (several may be given). Who gets it:

- `all`: every bus central knows (in fleet state or with a desired document);
- `bus:B`: that bus, known or not yet (it gets the message when it first connects);
- `route:R`: every bus whose current assignment is on route R. The assignment is the bus's
  desired one (what the dispatcher decided): its route_id, the route of its trip, or the
  routes of its block's trips (the last two need an imported feed). A bus without a desired
  assignment counts with the route it reports (fleet state).

Recipients are decided when the message is created, and again for a bus whenever its
assignment changes (`central.assign.next_desired`): a bus moved off route R loses R's
messages, one moved onto it gains them, a new bus gains the `all` messages.

Expiry: every message carries `valid_to`, so a bus stops showing it on time by its own clock
even when offline. Central also drops expired (and withdrawn) messages from the desired
documents, publishing a new version: `expire_messages` is a step of the service's periodic
sync (central/service/sync.py); withdrawing is immediate. These functions store and return
the documents to publish; only the service publishes them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from central.desired import Published, update_desired
from central.errors import Refused
from central.store import gtfs as gtfs_db
from central.store import messages as message_db
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.schemas import DesiredState, FleetEntry, PassengerMessage

__all__ = [
    "EXPIRY_CHECK_S",
    "Message",
    "MessageError",
    "check_target",
    "create_message",
    "expire_messages",
    "list_messages",
    "messages_for",
    "recipients",
    "withdraw_message",
]

log = logging.getLogger("busfleet.central.messages")

ACTIVE, EXPIRED, WITHDRAWN = "active", "expired", "withdrawn"
MAX_TEXT = 1000  # characters per language: a display or portal page, not an essay
MAX_PRIORITY = 9
EXPIRY_CHECK_S = 5.0  # how late central may drop an expired message (the bus hides it on time)


class MessageError(Refused):
    """A message that cannot be created or changed as asked (the text says why)."""


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    created: float
    text_de: str
    text_en: str
    priority: int
    targets: tuple[str, ...]
    valid_from: float | None
    valid_to: float | None
    status: str  # active, expired, withdrawn
    ended: float | None  # when it expired or was withdrawn

    def current(self, now: float) -> bool:
        """Still to be delivered: active and not past its end (it may not have begun)."""
        return self.status == ACTIVE and (self.valid_to is None or self.valid_to > now)

    def target_for(self, bus: str, routes: Iterable[str]) -> str | None:
        """The first of its targets that selects `bus` on `routes`, None if none does."""
        routes = set(routes)
        for target in self.targets:
            kind, _, value = target.partition(":")
            if (
                kind == "all"
                or (kind == "bus" and value == bus)
                or (kind == "route" and value in routes)
            ):
                return target
        return None

    def for_bus(self, target: str) -> PassengerMessage:
        return PassengerMessage(
            id=self.id,
            text_de=self.text_de,
            text_en=self.text_en,
            priority=self.priority,
            valid_from=self.valid_from,
            valid_to=self.valid_to,
            target=target,
        )


def check_target(text: str) -> str:
    """'all', 'route:R' or 'bus:B' (a valid bus id); MessageError otherwise."""
    kind, sep, value = text.partition(":")
    if text == "all":
        return text
    if sep and kind == "route" and value:
        return text
    if sep and kind == "bus" and topics.valid_bus_id(value):
        return text
    raise MessageError(f"bad target {text!r}: use all, route:ROUTE_ID or bus:BUS_ID")


def _row(r: dict[str, Any]) -> Message:
    """A `messages` row as a Message."""
    return Message(**{**r, "targets": tuple(codec.decode_json(r["targets"]))})


def list_messages(store: CentralStore, *, status: str | None = None) -> list[Message]:
    """Messages, newest first; only those of `status` if given."""
    return [_row(r) for r in message_db.message_rows(store, status=status)]


def _current(store: CentralStore, now: float) -> list[Message]:
    return [m for m in list_messages(store, status=ACTIVE) if m.current(now)]


def _order(m: PassengerMessage) -> tuple[int, float, str]:
    return (-m.priority, m.valid_from or 0.0, m.id)


def _fleet(store: CentralStore) -> dict[str, tuple[DesiredState | None, str | None]]:
    """Every known bus: its desired document and the route it reports."""
    fleet: dict[str, tuple[DesiredState | None, str | None]] = {}
    for row in store.buses():
        reported_route = None
        if row["body"]:
            reported_route = codec.decode(FleetEntry, row["body"].encode()).route_id
        fleet[row["bus"]] = (None, reported_route)
    for bus, body in store.all_desired():
        fleet[bus] = (codec.decode(DesiredState, body), fleet.get(bus, (None, None))[1])
    return fleet


def _routes(store: CentralStore, doc: DesiredState | None, reported_route: str | None) -> set[str]:
    if doc is not None and doc.assignment is not None:
        return gtfs_db.routes_of(store, doc.assignment)
    return {reported_route} if reported_route else set()


def recipients(store: CentralStore, message: Message) -> dict[str, str]:
    """The buses the message goes to now, each with the target that selects it."""
    out: dict[str, str] = {}
    fleet = _fleet(store)
    for target in message.targets:
        kind, _, value = target.partition(":")
        if kind == "bus" and value not in fleet:
            out.setdefault(value, target)
    for bus, (doc, reported_route) in fleet.items():
        chosen = message.target_for(bus, _routes(store, doc, reported_route))
        if chosen is not None:
            out.setdefault(bus, chosen)
    return dict(sorted(out.items()))


def messages_for(
    store: CentralStore, bus: str, routes: set[str], now: float
) -> list[PassengerMessage]:
    """The current messages a bus on `routes` should carry (for a new assignment)."""
    out = []
    for m in _current(store, now):
        target = m.target_for(bus, routes)
        if target is not None:
            out.append(m.for_bus(target))
    return sorted(out, key=_order)


def create_message(
    store: CentralStore,
    *,
    text_de: str,
    text_en: str = "",
    priority: int = 0,
    targets: Iterable[str],
    valid_from: float | None = None,
    valid_to: float | None = None,
    now: float | None = None,
) -> tuple[Message, Published]:
    """Store a message and put it into every recipient's desired state.

    Returns the message and the desired documents to publish. MessageError if invalid.
    """
    now = time.time() if now is None else now
    text_de, text_en = text_de.strip(), text_en.strip()
    checked = tuple(dict.fromkeys(check_target(t) for t in targets))
    if not text_de:
        raise MessageError("the German text is required")
    if max(len(text_de), len(text_en)) > MAX_TEXT:
        raise MessageError(f"a text may have at most {MAX_TEXT} characters")
    if not 0 <= priority <= MAX_PRIORITY:
        raise MessageError(f"priority is 0 (normal) to {MAX_PRIORITY} (urgent)")
    if not checked:
        raise MessageError("give at least one target: all, a route or a bus")
    if valid_to is not None and valid_to <= now:
        raise MessageError("the message would already be over (valid until is past)")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise MessageError("valid until must come after valid from")
    if gtfs_db.feed_info(store) is not None:
        for target in checked:
            kind, _, route = target.partition(":")
            if kind == "route" and not gtfs_db.route_exists(store, route):
                raise MessageError(f"route {route!r} is not in the imported GTFS feed")
    message = Message(
        id=f"m-{uuid.uuid4().hex[:10]}",
        created=now,
        text_de=text_de,
        text_en=text_en,
        priority=priority,
        targets=checked,
        valid_from=valid_from,
        valid_to=valid_to,
        status=ACTIVE,
        ended=None,
    )
    published: Published = {}
    with store.transaction():
        row = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
        message_db.add_message(store, {**row, "targets": codec.encode_json(list(checked))})
        for bus, target in recipients(store, message).items():
            item = message.for_bus(target)

            def add(doc: DesiredState, item: PassengerMessage = item) -> DesiredState:
                kept = [m for m in doc.messages if m.id != item.id and _still_valid(m, now)]
                return msgspec.structs.replace(doc, messages=sorted([*kept, item], key=_order))

            published[bus] = update_desired(store, bus, add)
    log.info("message %s to %d buses", message.id, len(published))
    return message, published


def _still_valid(m: PassengerMessage, now: float) -> bool:
    return m.valid_to is None or m.valid_to > now


def _sweep(store: CentralStore, ended: set[str], now: float) -> Published:
    """Drop ended and expired messages from every desired document that has any."""
    published: Published = {}
    for bus, body in store.all_desired():
        doc = codec.decode(DesiredState, body)
        kept = [m for m in doc.messages if m.id not in ended and _still_valid(m, now)]
        if len(kept) != len(doc.messages):

            def drop(d: DesiredState) -> DesiredState:
                return msgspec.structs.replace(
                    d,
                    messages=[m for m in d.messages if m.id not in ended and _still_valid(m, now)],
                )

            published[bus] = update_desired(store, bus, drop)
    return published


def withdraw_message(store: CentralStore, message_id: str, now: float | None = None) -> Published:
    """End a message now; returns the desired documents to publish. MessageError if unknown."""
    now = time.time() if now is None else now
    with store.transaction():
        if not message_db.end_message(store, message_id, WITHDRAWN, now, was=ACTIVE):
            status = message_db.message_status(store, message_id)
            if status is None:
                raise MessageError(f"no message {message_id!r}")
            raise MessageError(f"{message_id} is {status} already")
        return _sweep(store, {message_id}, now)


def expire_messages(store: CentralStore, now: float | None = None) -> Published:
    """Mark messages past their end expired and drop them from desired documents.

    Cheap when nothing expired (one indexed query); returns the documents to publish.
    """
    now = time.time() if now is None else now
    due = message_db.due_messages(store, ACTIVE, now)
    if not due:
        return {}
    with store.transaction():
        ids = set(due)
        message_db.end_messages(store, ids, EXPIRED, now, was=ACTIVE)
        published = _sweep(store, ids, now)
    log.info("%d messages expired; %d buses updated", len(ids), len(published))
    return published
