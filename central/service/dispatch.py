"""Dispatchers' requests at central: checked, carried out, answered.

Dashboards and the CLI tools never write a bus topic and need no database: a request
(protocols/requests.py, a tagged union) arrives on `busfleet/v1/dispatch/{user}/request`;
central checks it, carries it out with the feature modules (central/assign.py, messages.py,
playlists.py, diversions.py, media.py, gtfs_import.py, remote_config.py) and answers on
`busfleet/v1/dispatch/{user}/reply` with the request's id. What changed reaches every
dashboard the usual way: an alarm's retained document, a bus's fleet entry, the bus's
reported state. Every desired document written here is published by the service on its one
client, and fleet state hears of its new version directly (`on_desired`), not by listening
to the broker.

The tools' read-only requests (`Records`: commands, messages, diversions, the driver log, the
media library, playlists, the plays report) are answered with whole records, a page that fits
one reply at a time (`result["next"]` says where the next begins); each page is computed
afresh, so a list that changes between two pages may repeat or skip a record, as a paged
listing does anywhere.

One handler per request type, in a table: adding a type to the vocabulary without a handler
fails a test (tests/test_dispatch.py). A refusal (`central.errors.Refused`: the request was
wrong) goes back as `ok=False`; central's own trouble (anything else) is logged with its
traceback and answered `failed=True` (NotPorted, not yet on PostgreSQL: without traceback).

`user` is the dispatcher's name in the topic: its broker account, since deploy/'s city ACL
lets an account publish requests under its own name only (`pattern ... dispatch/%u/request`).
A request whose envelope says another dispatcher (`by`) is refused: nobody acts in another's
name. The account's role (central/roles.py) is checked before the handler; then the request
and its answer go to the audit log (roles.record).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from central import roles
from central.assign import check_assignment, next_desired
from central.config import CentralConfig
from central.desired import Published
from central.diversions import cancel_diversion, create_diversion, list_diversions
from central.driver import driver_log
from central.errors import CentralFault, Refused
from central.groups import expand_targets, group_members_as_buses
from central.gtfs_import import GtfsInvalid, import_gtfs, issue_lines
from central.media import MediaLibrary, MediaRejected
from central.messages import create_message, list_messages, recipients, withdraw_message
from central.playlists import (
    build_playlist,
    buses_with,
    desired_with_playlist,
    get_playlist,
    list_playlists,
    media_url_for,
    parse_source,
    save_playlist,
)
from central.remote_config import CONFIG_HANDLERS
from central.reports import plays_report
from central.service import queries
from central.service.alarm_center import AlarmCenter, Outgoing
from central.service.request_tables import handlers as more_handlers
from central.store import gtfs as gtfs_db
from central.store.backend import NotPorted
from central.store.db import CentralStore
from central.timetables import timetable_root
from central.uploads import UploadRefused, Uploads, staging_dir
from protocols import codec, topics
from protocols.errors import ProtocolError
from protocols.gtfs.table import Report as FeedReport
from protocols.requests import (
    REQUESTS,
    AckAlarm,
    Assign,
    AssignPlaylist,
    CancelDiversion,
    CreateDiversion,
    Detail,
    DispatchReply,
    DispatchRequest,
    DriverLog,
    DriverMessage,
    ImportGtfs,
    ImportMedia,
    ImportPlaylist,
    ListCommands,
    ListDiversions,
    Listing,
    ListMedia,
    ListMessages,
    ListPlaylists,
    PlaysReport,
    Record,
    Records,
    Report,
    Request,
    RequestBase,
    SavePlaylist,
    SendCommand,
    SendMessage,
    ShowPlaylist,
    Upload,
    WithdrawMessage,
    command_args,
    described,
)
from protocols.schemas import Assignment, Command, DesiredState, Scalar

__all__ = ["Dispatch", "refusal"]

log = logging.getLogger("busfleet.central.dispatch")

# Run on a thread with a connection of their own: they read much or write for long, and
# publish nothing.
SLOW: tuple[type[RequestBase], ...] = (Listing, Report, Records, ImportGtfs, ImportMedia, Upload)
SLOW_AT_ONCE = 2  # slow requests on threads at the same time; more wait their turn
REPLY_LIMIT = codec.MAX_PAYLOAD - 4096
PAGE_BYTES = REPLY_LIMIT // 2  # records per reply: half of it, the envelope is never near

Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]
OnDesired = Callable[[str, DesiredState], None]


class _Id(msgspec.Struct):
    """Just the id of an envelope that does not validate, to refuse it by name."""

    id: str


@dataclass(slots=True)
class Ctx:
    """What a handler works with; it adds commands to `out` and desired documents to
    `desired`, which the service publishes."""

    store: CentralStore
    user: str
    now: float
    out: list[Outgoing] = field(default_factory=list)
    desired: Published = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)  # a page, to a `Records` request


def _bus(text: str) -> str:
    try:
        return topics.check_bus_id(text.strip())
    except ProtocolError as exc:
        raise Refused(str(exc)) from None


def refusal(exc: msgspec.ValidationError) -> str:
    """A validation error of a request, said for a dispatcher."""
    text = str(exc)
    message, _, where = text.partition(" - at `")
    where = where.rstrip("`").removeprefix("$.request").lstrip(".")
    if message.startswith("Invalid value ") and where == "type":
        return f"unknown action {message.removeprefix('Invalid value ')}"
    if message.startswith("Invalid value ") and where == "command.name":
        return f"unknown command {message.removeprefix('Invalid value ')}"
    return f"{where}: {message}" if where else message


class Dispatch:
    def __init__(
        self,
        store: CentralStore,
        config: CentralConfig,
        alarms: AlarmCenter,
        on_desired: OnDesired | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.alarms = alarms
        self.on_desired = on_desired  # fleet state hears of every new desired version
        self.counters: dict[str, int] = dict.fromkeys(
            ("requests", "refused", "failed", "bad", "impersonations"), 0
        )
        self._threads = asyncio.Semaphore(SLOW_AT_ONCE)
        self.uploads = Uploads(staging_dir(config))  # files for imports, per dispatcher
        self.handlers: dict[type[RequestBase], Callable[[Ctx, Any], Answer]] = {
            AckAlarm: self._ack_alarm,
            Assign: self._assign,
            AssignPlaylist: self._playlist,
            SavePlaylist: self._save_playlist,
            ImportPlaylist: self._import_playlist,
            ImportMedia: self._import_media,
            Upload: self._upload,
            SendMessage: self._message,
            WithdrawMessage: self._withdraw_message,
            SendCommand: self._command,
            CreateDiversion: self._divert,
            CancelDiversion: self._cancel_diversion,
            Detail: self._detail,
            Listing: self._list,
            Report: self._report,
            ImportGtfs: self._import_gtfs,
            ListCommands: self._list_commands,
            ListMessages: self._list_messages,
            ListDiversions: self._list_diversions,
            DriverLog: self._driver_log,
            ListMedia: self._list_media,
            ListPlaylists: self._list_playlists,
            ShowPlaylist: self._show_playlist,
            PlaysReport: self._plays_report,
            **CONFIG_HANDLERS,  # central/remote_config.py
        }
        self.handlers.update(more_handlers(config, _page))  # timetables, groups, releases...
        assert set(self.handlers) == set(REQUESTS), "every request type has its handler"

    async def handle(self, topic: str, payload: bytes, now: float | None = None) -> list[Outgoing]:
        """One request: what to publish (the reply last). Bad input is logged, never raised."""
        now = time.time() if now is None else now
        try:
            user = topics.dispatch_user(topic)
            envelope = codec.decode(DispatchRequest, payload)
        except ProtocolError as exc:
            return self._unreadable(topic, payload, exc, now)
        self.counters["requests"] += 1
        request = envelope.request
        if envelope.by and envelope.by != user:
            self.counters["impersonations"] += 1
            why = (
                f"this request says it is from {envelope.by!r} but came from the broker account "
                f"{user!r}: a dispatcher asks under its own account only (log in as {envelope.by!r}"
                " to act as them)"
            )
            reply = self._refuse(envelope.id, user, why, now)
            return [(topics.dispatch_reply(user), _fit(reply), False)]
        c = Ctx(self.store, user, now)
        try:
            log.info("%s: %s", user, described(request))
            roles.check(c.store, user, request)  # refused unless the account's role may
            if isinstance(request, SLOW) and self.store.shareable:
                async with self._threads:  # a few at once: each holds a connection and a core
                    result, tables = await asyncio.to_thread(self._threaded, c, request)
            else:
                result, tables = self.handlers[type(request)](c, request)
            reply = DispatchReply(
                id=envelope.id, ok=True, t=now, result=result, tables=tables, records=c.records
            )
        except Refused as exc:
            reply = self._refuse(envelope.id, user, str(exc), now, exc.result, exc.tables)
        except (ProtocolError, ValueError) as exc:  # ValueError: the older rules' way
            reply = self._refuse(envelope.id, user, str(exc), now)
        except Exception as exc:  # NotPorted: on PostgreSQL not yet, and no bug to trace
            ported = not isinstance(exc, NotPorted)
            fault = CentralFault(f"central failed to carry out the request: {exc}")
            error = str(fault) if ported else f"central cannot do this on PostgreSQL yet ({exc})"
            log.log(40 if ported else 30, "%s failed: %s", described(request), exc, exc_info=ported)
            self.counters["failed"] += 1
            reply = DispatchReply(id=envelope.id, ok=False, t=now, error=error, failed=True)
        roles.record(self.store, user, request, reply)  # the audit log
        out = [*c.out, *self._desired(c.desired)]
        out.extend(self.alarms.take_outgoing())
        out.append((topics.dispatch_reply(user), _fit(reply), False))
        return out

    def _unreadable(
        self, topic: str, payload: bytes, exc: ProtocolError, now: float
    ) -> list[Outgoing]:
        """A request that does not validate is refused with the reason, if it has an id and
        a reply topic; anything less is only counted and logged."""
        cause = exc.__cause__
        try:
            user = topics.dispatch_user(topic)
            request_id = msgspec.json.decode(payload, type=_Id).id
        except (ProtocolError, msgspec.DecodeError, RecursionError):
            self.counters["bad"] += 1
            log.warning("ignored a bad dispatch request on %s: %s", topic, exc)
            return []
        self.counters["requests"] += 1
        why = refusal(cause) if isinstance(cause, msgspec.ValidationError) else str(exc)
        reply = self._refuse(request_id, user, why, now)
        return [(topics.dispatch_reply(user), _fit(reply), False)]

    def _refuse(
        self,
        request_id: str,
        user: str,
        error: str,
        now: float,
        result: dict[str, Scalar] | None = None,
        tables: dict[str, list[dict[str, Scalar]]] | None = None,
    ) -> DispatchReply:
        self.counters["refused"] += 1
        log.info("refused %s's request %s: %s", user, request_id, error)
        return DispatchReply(
            id=request_id, ok=False, t=now, error=error, result=result or {}, tables=tables or {}
        )

    def _desired(self, published: Published) -> list[Outgoing]:
        for bus, (_, body) in sorted(published.items()):
            if self.on_desired is not None:
                self.on_desired(bus, codec.decode(DesiredState, body))
        return [(topics.desired(bus), body, True) for bus, (_, body) in sorted(published.items())]

    def _threaded(self, c: Ctx, request: Request) -> Answer:
        """On a thread, with a connection of its own; what it adds goes into `c`'s lists."""
        with self.store.for_thread() as store:
            return self.handlers[type(request)](dataclasses.replace(c, store=store), request)

    # -- handlers: (context, request) -> (result, tables) -------------------------------------
    def _ack_alarm(self, c: Ctx, r: AckAlarm) -> Answer:
        alarm = self.alarms.acknowledge(r.alarm.strip(), c.user, r.note.strip(), c.now)
        return {"alarm": alarm.id, "state": alarm.state}, {}

    def _assign(self, c: Ctx, r: Assign) -> Answer:
        bus = _bus(r.bus)
        assignment = Assignment(
            trip_id=(r.trip or "").strip() or None,
            block_id=(r.block or "").strip() or None,
            route_id=(r.route or "").strip() or None,
        )
        if assignment == Assignment():
            raise Refused("give a trip, a block or a route")
        check_assignment(c.store, assignment, bus)
        c.desired[bus] = next_desired(c.store, bus, assignment, c.now)
        return {"bus": bus, "version": c.desired[bus][0]}, {}

    def _playlist(self, c: Ctx, r: AssignPlaylist) -> Answer:
        buses = [_bus(r.bus)] if ":" not in r.bus else expand_targets(c.store, [r.bus])
        name = r.playlist.strip()
        playlist = None
        if name and name != "none":
            playlist = get_playlist(c.store, name)
            if playlist is None:
                raise Refused(f"no playlist {name!r}")
        for bus in buses:  # a bus, bus:B or group:G (central/groups.py)
            c.desired[bus] = desired_with_playlist(c.store, bus, playlist)
        return {
            "bus": r.bus.strip(),
            "version": max((v for v, _ in c.desired.values()), default=0),
        }, {}

    def _save_playlist(self, c: Ctx, r: SavePlaylist) -> Answer:
        refs = [ref.strip() for ref in r.media if ref.strip()]
        if not refs:
            raise Refused("name at least one media file")
        items = [
            {"id": f"i{n}", "media": ref, "duration_s": r.seconds} for n, ref in enumerate(refs, 1)
        ]
        source = {
            "id": r.id.strip(),
            "timezone": gtfs_db.timezone(c.store) or "UTC",
            "items": items,
            "schedules": [{"id": "all", "items": [i["id"] for i in items]}],
        }
        library = MediaLibrary(c.store, self.config.media_dir)
        built = build_playlist(library, source, media_url_for(self.config))
        saved = save_playlist(c.store, built)
        return {"id": saved.id, "revision": saved.revision}, {}

    def _import_playlist(self, c: Ctx, r: ImportPlaylist) -> Answer:
        media_url = media_url_for(self.config)
        library = MediaLibrary(c.store, self.config.media_dir)
        source = parse_source(r.source, r.format, r.name or "the playlist")
        saved = save_playlist(c.store, build_playlist(library, source, media_url))
        if r.push:
            for bus in buses_with(c.store, saved.id):
                c.desired[bus] = desired_with_playlist(c.store, bus, saved)
        result: dict[str, Scalar] = {
            "id": saved.id,
            "revision": saved.revision,
            "items": len(saved.items),
            "schedules": len(saved.schedules),
            "media_url": media_url,
        }
        pushed = [{"bus": b, "version": v} for b, (v, _) in sorted(c.desired.items())]
        return result, {"pushed": _table(pushed)}

    def _upload(self, c: Ctx, r: Upload) -> Answer:
        return self.uploads.receive(c.user, r), {}

    def _import_media(self, c: Ctx, r: ImportMedia) -> Answer:
        library = MediaLibrary(c.store, self.config.media_dir)
        imported: list[dict[str, Scalar]] = []
        rejected: list[dict[str, Scalar]] = []
        for file in r.files:
            try:
                with self.uploads.finished(c.user, file.upload) as path:
                    info = library.import_file(path, file.name)
            except (MediaRejected, UploadRefused, OSError) as exc:
                rejected.append({"path": file.name, "error": str(exc)})
                continue
            imported.append(
                {"sha256": info.sha256, "name": info.name, "mime": info.mime, "size": info.size}
            )
        result: dict[str, Scalar] = {"imported": len(imported), "rejected": len(rejected)}
        return result, {"media": imported, "rejected": rejected}

    def _message(self, c: Ctx, r: SendMessage) -> Answer:
        targets = [t.strip() for text in r.targets for t in text.replace(" ", ",").split(",")]
        message, published = create_message(
            c.store,
            text_de=r.text_de,
            text_en=r.text_en,
            priority=r.priority,
            targets=group_members_as_buses(c.store, [t for t in targets if t]),
            valid_from=r.valid_from,
            valid_to=r.valid_to,
            now=c.now,
        )
        c.desired.update(published)
        buses = [{"bus": b, "version": v} for b, (v, _) in sorted(published.items())]
        return {"id": message.id, "buses": len(published)}, {"buses": _table(buses)}

    def _withdraw_message(self, c: Ctx, r: WithdrawMessage) -> Answer:
        published = withdraw_message(c.store, r.id.strip(), c.now)
        c.desired.update(published)
        return {"buses": len(published)}, {}

    def _command(self, c: Ctx, r: SendCommand) -> Answer:
        bus = _bus(r.bus)
        command = r.command
        if isinstance(command, DriverMessage) and not command.text.strip():
            raise Refused(f"{command.__struct_config__.tag} needs a text of 1 to 500 characters")
        name = str(command.__struct_config__.tag)
        args = command_args(command)
        if isinstance(command, DriverMessage):  # an Announce checks its own text
            args["text"] = command.text.strip()
        expires = c.now + r.ttl_s
        cmd = Command(id=uuid.uuid4().hex[:16], name=name, t=c.now, expires=expires, args=args)
        c.store.add_command(cmd.id, bus, name, codec.encode_json(args), c.now, cmd.expires)
        c.out.append((topics.command(bus), codec.encode(cmd), False))
        return {"id": cmd.id, "bus": bus, "name": name}, {}

    def _divert(self, c: Ctx, r: CreateDiversion) -> Answer:
        diversion, published = create_diversion(
            c.store,
            route_id=r.route,
            trips=r.trips,
            skip=r.skip,
            temp_stops=[(t.name, t.lat, t.lon) for t in r.temp_stops],
            path=r.path,
            valid_from=r.valid_from,
            valid_to=r.valid_to,
            notice_de=r.notice_de,
            notice_en=r.notice_en,
            now=c.now,
        )
        c.desired.update(published)
        buses = [{"bus": b, "version": v} for b, (v, _) in sorted(published.items())]
        return {"id": diversion.id, "buses": len(published)}, {"buses": _table(buses)}

    def _cancel_diversion(self, c: Ctx, r: CancelDiversion) -> Answer:
        published = cancel_diversion(c.store, r.id.strip(), c.now)
        c.desired.update(published)
        return {"id": r.id, "buses": len(published)}, {}

    def _detail(self, c: Ctx, r: Detail) -> Answer:
        return queries.bus_detail(c.store, _bus(r.bus), c.now)

    def _list(self, c: Ctx, r: Listing) -> Answer:
        return queries.listing(c.store, r.what, {"route": r.route}, self.config.media_dir)

    def _report(self, c: Ctx, r: Report) -> Answer:
        return queries.report(c.store, r.what, {"days": r.days}, c.now)

    def _import_gtfs(self, c: Ctx, r: ImportGtfs) -> Answer:
        try:
            with self.uploads.finished(c.user, r.upload) as path:
                result = import_gtfs(
                    c.store,
                    path,
                    now=c.now,
                    max_listed=r.max_listed,
                    encoding=r.encoding,
                    source_name=f"{r.name or 'a feed'} uploaded by {c.user}",
                    timetable_dir=timetable_root(self.config),
                )
        except GtfsInvalid as exc:  # refused, with the counts and the issues the CLI prints
            counts: dict[str, Scalar] = {
                "errors": exc.report.error_count,
                "warnings": exc.report.warning_count,
            }
            raise Refused(
                f"the feed was not imported: {exc}", result=counts, tables=_issues(exc.report)
            ) from exc
        summary: dict[str, Scalar] = {
            k: v for k, v in result.summary.items() if isinstance(v, int | float | str)
        }
        return summary, _issues(result.report)

    # -- the tools' read-only requests: whole records, paged (_page) -------------------------
    def _list_commands(self, c: Ctx, r: ListCommands) -> Answer:
        return _page(c, c.store.commands(r.bus), r.offset)

    def _list_messages(self, c: Ctx, r: ListMessages) -> Answer:
        records: list[Record] = []
        for m in list_messages(c.store, status=r.status):
            row = dataclasses.asdict(m)
            row["targets"] = list(m.targets)
            row["buses"] = sorted(recipients(c.store, m)) if m.status == "active" else []
            records.append(row)
        return _page(c, records, r.offset)

    def _list_diversions(self, c: Ctx, r: ListDiversions) -> Answer:
        records: list[Record] = []
        for d in list_diversions(c.store, status=r.status):
            row = msgspec.to_builtins(d.diversion)
            row.update(created=d.created, status=d.status, ended=d.ended)
            records.append(row)
        return _page(c, records, r.offset)

    def _driver_log(self, c: Ctx, r: DriverLog) -> Answer:
        entries = driver_log(c.store, bus=r.bus, since=r.since)
        return _page(c, [e.as_dict() for e in entries], r.offset)

    def _list_media(self, c: Ctx, r: ListMedia) -> Answer:
        library = MediaLibrary(c.store, self.config.media_dir)
        return _page(c, [dataclasses.asdict(m) for m in library.list()], r.offset)

    def _list_playlists(self, c: Ctx, r: ListPlaylists) -> Answer:
        records: list[Record] = [
            {
                "id": p.id,
                "revision": p.revision,
                "items": len(p.items),
                "schedules": len(p.schedules),
                "timezone": p.timezone,
            }
            for p in list_playlists(c.store)
        ]
        return _page(c, records, r.offset)

    def _show_playlist(self, c: Ctx, r: ShowPlaylist) -> Answer:
        playlist = get_playlist(c.store, r.id)
        if playlist is None:
            raise Refused(f"no playlist {r.id!r}")
        return _page(c, [msgspec.to_builtins(playlist)], r.offset)

    def _plays_report(self, c: Ctx, r: PlaysReport) -> Answer:
        if r.last < r.first:
            raise Refused("the last day is before the first")
        try:
            zoneinfo.ZoneInfo(r.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise Refused(f"no timezone {r.timezone!r}") from exc
        rows = plays_report(c.store, r.first, r.last, r.timezone, item=r.item)
        return _page(c, [dataclasses.asdict(row) for row in rows], r.offset)


def _page(c: Ctx, records: list[Record], offset: int) -> Answer:
    """The records from `offset` that fit one reply go into `c.records` (at least one, so
    that a big record still comes); `next` in the result says where the rest begins."""
    budget = PAGE_BYTES
    end = offset
    while end < len(records):
        size = len(msgspec.json.encode(records[end])) + 1
        if end > offset and size > budget:
            break
        budget -= size
        end += 1
    c.records.extend(records[offset:end])
    result: dict[str, Scalar] = {"total": len(records)}
    if end < len(records):
        result["next"] = end
    return result, {}


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Scalar]]:
    return [
        {k: v for k, v in row.items() if v is None or isinstance(v, str | int | float)}
        for row in rows
    ]


def _fit(reply: DispatchReply) -> bytes:
    """The reply's payload; tables and records cut (and the cut said) so that it fits one
    MQTT message. Records come paged (_page), so only one record too big for a reply is cut."""
    payload = codec.encode(reply)
    if len(payload) <= REPLY_LIMIT:
        return payload
    tables: dict[str, list[Any]] = {k: list(v) for k, v in reply.tables.items()}
    records = list(reply.records)
    while len(payload) > REPLY_LIMIT and (records or any(tables.values())):
        if any(tables.values()):
            name = max(tables, key=lambda k: len(tables[k]))
            tables[name] = tables[name][: len(tables[name]) * 3 // 4]
        else:
            records = records[: len(records) * 3 // 4]
        cut = msgspec.structs.replace(
            reply, tables=tables, records=records, result={**reply.result, "truncated": True}
        )
        payload = codec.encode(cut)
    return payload


def _issues(report: FeedReport) -> dict[str, list[dict[str, Scalar]]]:
    return {"issues": _table([{"issue": line} for line in issue_lines(report)])}
