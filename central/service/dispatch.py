"""Dispatchers' requests at central: checked, carried out, answered.

Dashboards never write a bus topic and need no database: a dispatcher's request arrives on
`busfleet/v1/dispatch/{user}/request` (the broker lets only dispatchers write there); central
checks it, carries it out with the functions the CLI tools use (central/assign.py,
messages.py, playlists.py, commands) and answers on `busfleet/v1/dispatch/{user}/reply` with
the request's id. What changed reaches every dashboard the usual way: an alarm's retained
document, a bus's fleet entry, the bus's reported state.

Actions and their arguments:

    ack_alarm         alarm, note
    assign            bus, and trip, block and/or route
    playlist          bus, playlist ("" for none)
    save_playlist     id, media (names or hashes, comma-separated, in play order), seconds:
                      one item per media, one schedule all day every day; a new revision
    message           text_de, text_en, priority, targets ("all", "route:R", "bus:B",
                      comma-separated), valid_from, valid_to (unix seconds, optional)
    withdraw_message  id
    command           bus, name, ttl_s, and arg.NAME for each argument of the command
    detail            bus
    list              what: routes, trips (route), blocks, stops, shapes, playlists, media,
                      messages
    report            what: plays, punctuality, feedback; days (1-31)
    import_gtfs       path (a file on central's machine)

`user` is the dispatcher's name in the topic; with one shared broker account for dispatchers
it is what the dashboard says (`busfleet central dash --name`), so it names, it does not prove.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from central.assign import AssignmentError, check_assignment, next_desired
from central.commands import KNOWN
from central.config import CentralConfig
from central.fleet.alarms import AlarmError
from central.gtfs_import import GtfsInvalid, import_gtfs
from central.media import MediaLibrary
from central.messages import MessageError, create_message, withdraw_message
from central.playlists import (
    PlaylistError,
    build_playlist,
    desired_with_playlist,
    get_playlist,
    media_url_for,
    save_playlist,
)
from central.service import queries
from central.service.alarm_center import AlarmCenter, Outgoing
from central.store import gtfs as gtfs_db
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.errors import ProtocolError
from protocols.schemas import (
    Assignment,
    Command,
    DispatchReply,
    DispatchRequest,
    Scalar,
)

__all__ = ["ACTIONS", "Dispatch", "DispatchError"]

log = logging.getLogger("busfleet.central.dispatch")

COMMANDS = (*KNOWN, "driver_message")
ACTIONS = (
    "ack_alarm",
    "assign",
    "playlist",
    "save_playlist",
    "message",
    "withdraw_message",
    "command",
    "detail",
    "list",
    "report",
    "import_gtfs",
)
SLOW = ("list", "report", "import_gtfs")  # run on a thread with a connection of their own
REPLY_LIMIT = codec.MAX_PAYLOAD - 4096


class DispatchError(ValueError):
    """A request central refuses; the text goes back to the dispatcher."""


Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]


def _str(args: dict[str, Scalar], name: str, *, required: bool = True) -> str:
    value = args.get(name)
    if value is None or value == "":
        if required:
            raise DispatchError(f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise DispatchError(f"{name} must be text")
    return value.strip()


def _num(args: dict[str, Scalar], name: str) -> float | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DispatchError(f"{name} must be a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class Ctx:
    """What an action works with; it appends what to publish to `out`."""

    store: CentralStore
    args: dict[str, Scalar]
    user: str
    now: float
    out: list[Outgoing]


class Dispatch:
    def __init__(self, store: CentralStore, config: CentralConfig, alarms: AlarmCenter) -> None:
        self.store = store
        self.config = config
        self.alarms = alarms
        self.counters: dict[str, int] = {"requests": 0, "refused": 0, "bad": 0}

    async def handle(self, topic: str, payload: bytes, now: float | None = None) -> list[Outgoing]:
        """One request: what to publish (the reply last). Bad input is logged, never raised."""
        now = time.time() if now is None else now
        try:
            user = topics.dispatch_user(topic)
            request = codec.decode(DispatchRequest, payload)
        except ProtocolError as exc:
            self.counters["bad"] += 1
            log.warning("ignored a bad dispatch request on %s: %s", topic, exc)
            return []
        self.counters["requests"] += 1
        out: list[Outgoing] = []
        try:
            if request.action in SLOW and self.config.db != ":memory:":
                result, tables = await asyncio.to_thread(self._threaded, request, user, now)
            else:
                result, tables = self._do(self.store, request, user, now, out)
            reply = DispatchReply(id=request.id, ok=True, t=now, result=result, tables=tables)
        except (DispatchError, AlarmError, AssignmentError, MessageError, PlaylistError) as exc:
            reply = self._refuse(request, user, str(exc), now)
        except GtfsInvalid as exc:
            reply = self._refuse(request, user, f"the feed was not imported: {exc}", now)
        except (ProtocolError, ValueError) as exc:
            reply = self._refuse(request, user, str(exc), now)
        out.extend(self.alarms.take_outgoing())
        out.append((topics.dispatch_reply(user), _fit(reply), False))
        return out

    def _refuse(self, request: DispatchRequest, user: str, error: str, now: float) -> DispatchReply:
        self.counters["refused"] += 1
        log.info("refused %s's %s: %s", user, request.action, error)
        return DispatchReply(id=request.id, ok=False, t=now, error=error)

    def _threaded(self, request: DispatchRequest, user: str, now: float) -> Answer:
        with _own_store(self.config.db) as store:
            return self._do(store, request, user, now, [])

    def _do(
        self,
        store: CentralStore,
        request: DispatchRequest,
        user: str,
        now: float,
        out: list[Outgoing],
    ) -> Answer:
        handler: Callable[..., Answer] | None = getattr(self, f"_{request.action}", None)
        if request.action not in ACTIONS or handler is None:
            raise DispatchError(f"unknown action {request.action!r}")
        log.info("%s: %s %s", user, request.action, request.args)
        answer: Answer = handler(Ctx(store, request.args, user, now, out))
        return answer

    # -- actions: (the request's context) -> (result, tables) ---------------------------------
    def _ack_alarm(self, c: Ctx) -> Answer:
        alarm = self.alarms.acknowledge(
            _str(c.args, "alarm"), c.user, _str(c.args, "note", required=False), c.now
        )
        return {"alarm": alarm.id, "state": alarm.state}, {}

    def _assign(self, c: Ctx) -> Answer:
        bus = topics.check_bus_id(_str(c.args, "bus"))
        assignment = Assignment(
            trip_id=_str(c.args, "trip", required=False) or None,
            block_id=_str(c.args, "block", required=False) or None,
            route_id=_str(c.args, "route", required=False) or None,
        )
        if assignment == Assignment():
            raise DispatchError("give a trip, a block or a route")
        check_assignment(c.store, assignment)
        version, payload = next_desired(c.store, bus, assignment, c.now)
        c.out.append((topics.desired(bus), payload, True))
        return {"bus": bus, "version": version}, {}

    def _playlist(self, c: Ctx) -> Answer:
        bus = topics.check_bus_id(_str(c.args, "bus"))
        name = _str(c.args, "playlist", required=False)
        playlist = None
        if name:
            playlist = get_playlist(c.store, name)
            if playlist is None:
                raise DispatchError(f"no playlist {name!r}")
        version, payload = desired_with_playlist(c.store, bus, playlist)
        c.out.append((topics.desired(bus), payload, True))
        return {"bus": bus, "version": version}, {}

    def _save_playlist(self, c: Ctx) -> Answer:
        refs = [r.strip() for r in _str(c.args, "media").split(",") if r.strip()]
        if not refs:
            raise DispatchError("name at least one media file")
        seconds = _num(c.args, "seconds") or 10.0
        items = [
            {"id": f"i{n}", "media": ref, "duration_s": seconds} for n, ref in enumerate(refs, 1)
        ]
        source = {
            "id": _str(c.args, "id"),
            "timezone": gtfs_db.timezone(c.store) or "UTC",
            "items": items,
            "schedules": [{"id": "all", "items": [i["id"] for i in items]}],
        }
        library = MediaLibrary(c.store, self.config.media_dir)
        built = build_playlist(library, source, media_url_for(self.config))
        saved = save_playlist(c.store, built)
        return {"id": saved.id, "revision": saved.revision}, {}

    def _message(self, c: Ctx) -> Answer:
        targets = [t.strip() for t in _str(c.args, "targets").replace(" ", ",").split(",")]
        priority = _num(c.args, "priority")
        message, published = create_message(
            c.store,
            text_de=_str(c.args, "text_de"),
            text_en=_str(c.args, "text_en", required=False),
            priority=int(priority or 0),
            targets=[t for t in targets if t],
            valid_from=_num(c.args, "valid_from"),
            valid_to=_num(c.args, "valid_to"),
            now=c.now,
        )
        c.out.extend(
            (topics.desired(bus), payload, True) for bus, (_, payload) in published.items()
        )
        return {"id": message.id, "buses": len(published)}, {}

    def _withdraw_message(self, c: Ctx) -> Answer:
        published = withdraw_message(c.store, _str(c.args, "id"), c.now)
        c.out.extend(
            (topics.desired(bus), payload, True) for bus, (_, payload) in published.items()
        )
        return {"buses": len(published)}, {}

    def _command(self, c: Ctx) -> Answer:
        bus = topics.check_bus_id(_str(c.args, "bus"))
        name = _str(c.args, "name")
        if name not in COMMANDS:
            raise DispatchError(f"unknown command {name!r}: one of {', '.join(COMMANDS)}")
        ttl = _num(c.args, "ttl_s") or 300.0
        if not 0 < ttl <= 86400:
            raise DispatchError("ttl_s is 1 s to a day")
        cmd_args = {k[4:]: v for k, v in c.args.items() if k.startswith("arg.")}
        if name in ("announce", "driver_message"):
            text = cmd_args.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > 500:
                raise DispatchError(f"{name} needs a text of 1 to 500 characters")
        cmd = Command(
            id=uuid.uuid4().hex[:16], name=name, t=c.now, expires=c.now + ttl, args=cmd_args
        )
        c.store.add_command(cmd.id, bus, name, codec.encode_json(cmd_args), c.now, cmd.expires)
        c.out.append((topics.command(bus), codec.encode(cmd), False))
        return {"id": cmd.id, "bus": bus}, {}

    def _detail(self, c: Ctx) -> Answer:
        return queries.bus_detail(c.store, topics.check_bus_id(_str(c.args, "bus")), c.now)

    def _list(self, c: Ctx) -> Answer:
        return queries.listing(c.store, _str(c.args, "what"), c.args, self.config.media_dir)

    def _report(self, c: Ctx) -> Answer:
        return queries.report(c.store, _str(c.args, "what"), c.args, c.now)

    def _import_gtfs(self, c: Ctx) -> Answer:
        result = import_gtfs(c.store, _str(c.args, "path"), now=c.now)
        summary: dict[str, Scalar] = {
            k: v for k, v in result.summary.items() if isinstance(v, int | float | str)
        }
        return summary, {}


@contextlib.contextmanager
def _own_store(path: str) -> Iterator[CentralStore]:
    store = CentralStore(path)
    try:
        yield store
    finally:
        store.close()


def _fit(reply: DispatchReply) -> bytes:
    """The reply's payload; tables cut (and the cut said) so that it fits one MQTT message."""
    payload = codec.encode(reply)
    if len(payload) <= REPLY_LIMIT:
        return payload
    tables: dict[str, list[Any]] = {k: list(v) for k, v in reply.tables.items()}
    while len(payload) > REPLY_LIMIT and any(tables.values()):
        name = max(tables, key=lambda k: len(tables[k]))
        tables[name] = tables[name][: len(tables[name]) * 3 // 4]
        cut = msgspec.structs.replace(
            reply, tables=tables, result={**reply.result, "truncated": True}
        )
        payload = codec.encode(cut)
    return payload
