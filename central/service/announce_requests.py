"""Dispatchers' requests for live announcements (issue 17), as timetable_requests.py.

`LiveAnnounce` stores one command per targeted bus (central/announcements.py has the rules)
and publishes them; the answer names the buses. `AnnouncementStatus` reads back where each
stands (sent, delivered, failed, expired).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from central.announcements import announce, status
from central.config import CentralConfig
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.announce_requests import AnnouncementStatus, LiveAnnounce
from protocols.requests import Record, RequestBase
from protocols.schemas import Scalar

__all__ = ["Context", "handlers"]

Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]
Handler = Callable[[Any, Any], Answer]
Page = Callable[[Any, list[Record], int], Answer]
Outgoing = tuple[str, bytes, bool]


class Context(Protocol):
    """What these handlers use of dispatch's `Ctx`."""

    store: CentralStore
    now: float
    out: list[Outgoing]


def handlers(config: CentralConfig, page: Page) -> dict[type[RequestBase], Handler]:
    """The handlers of this module's requests, for dispatch's table."""

    def live_announce(c: Context, r: LiveAnnounce) -> Answer:
        sent = announce(c.store, r.to, r.de, r.en, ttl_s=r.ttl_s, now=c.now)
        buses: list[dict[str, Scalar]] = []
        for bus, cmd in sent.commands:
            c.out.append((topics.command(bus), codec.encode(cmd), False))
            buses.append({"bus": bus, "command": cmd.id})
        result: dict[str, Scalar] = {
            "announcement": sent.id,
            "buses": len(sent.commands),
            "expires": sent.expires,
        }
        return result, {"buses": buses}

    def announcement_status(c: Context, r: AnnouncementStatus) -> Answer:
        records: list[Record] = status(c.store, r.id)
        return page(c, records, r.offset)

    return {LiveAnnounce: live_announce, AnnouncementStatus: announcement_status}
