"""One vocabulary for asking central, and for central telling a bus: msgspec tagged unions.

A dispatcher's request (from the dashboard or a CLI tool) is one of the `Request` structs,
told apart by its `type` tag, carried in a `DispatchRequest` envelope with an id; central
answers with a `DispatchReply` of the same id (central/service/dispatch.py carries each type
out). The tools' read-only
requests (`ListCommands`, `ListMessages`, `DriverLog`, `PlaysReport`, ...) are `Records`: their
answer is whole records in `DispatchReply.records`, a page at a time. A command to a bus is one
of the `BusCommand` structs, told apart by its `name`; on the
wire it travels as `protocols.schemas.Command` (name + args), so agents of every version read
it, and `bus_command` turns that back into the typed struct at the bus.

Like h11's events: frozen, validated where bytes come in, and nothing stringly-typed. The
bounds here are generous caps that keep a payload sane (a text is not a megabyte, a list has
not a million entries); the exact rules a dispatcher meets (a message text of at most 1000
characters, a known route) are central's, and its refusal says which one was broken.

Pure: no I/O; times are unix seconds given by the caller.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from protocols import announce_requests as live  # issue 17: live announcements
from protocols import people_requests as people  # issue 18: roles and the audit log
from protocols import release_requests as release  # issue 16: software rollouts
from protocols import report_requests as operator  # issue 18: operator reports, replay
from protocols.bus_commands import (  # commands to a bus, re-exported
    BUS_COMMANDS,
    COMMAND_NAMES,
    Announce,
    BusCommand,
    BusCommandBase,
    DriverMessage,
    Logs,
    Resend,
    Restart,
    bus_command,
    command_args,
)
from protocols.request_base import Records, RequestBase
from protocols.schemas import SCHEMA_VERSION, Lat, Lon, Scalar

__all__ = [
    "BUS_COMMANDS",
    "COMMAND_NAMES",
    "REQUESTS",
    "UPLOAD_CHUNK_BYTES",
    "AckAlarm",
    "Announce",
    "Assign",
    "AssignPlaylist",
    "BusCommand",
    "BusCommandBase",
    "CancelDiversion",
    "CentralPresence",
    "CommandAnswer",
    "CreateDiversion",
    "DeleteGroup",
    "Detail",
    "DispatchReply",
    "DispatchRequest",
    "DriverLog",
    "DriverMessage",
    "ImportGtfs",
    "ImportMedia",
    "ImportPlaylist",
    "ListCommands",
    "ListDiversions",
    "ListGroups",
    "ListMedia",
    "ListMessages",
    "ListPlaylists",
    "ListTimetables",
    "Listing",
    "Logs",
    "PlaysReport",
    "PublishTimetable",
    "ReadRequest",
    "Record",
    "Records",
    "Report",
    "ReportKind",
    "Request",
    "RequestBase",
    "Resend",
    "Restart",
    "SavePlaylist",
    "SendCommand",
    "SendMessage",
    "SetConfig",
    "SetGroup",
    "ShowConfig",
    "ShowGroup",
    "ShowPlaylist",
    "ShowTimetable",
    "TempStopSpec",
    "Upload",
    "UploadedFile",
    "WithdrawMessage",
    "bus_command",
    "command_args",
]

# Caps, not rules (see the module docstring).
Name = Annotated[str, msgspec.Meta(max_length=200)]  # an id, a bus, a route, a user's label
Text = Annotated[str, msgspec.Meta(max_length=4000)]  # a passenger or driver text, a note
UploadId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]  # the sender's, random
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
MAX_UPLOAD_BYTES = 4 * 2**30  # a cap, not central's rule (central/uploads.py has its own)
# The bytes of one `Upload`: JSON carries them in base64 (4/3 as long), and a request must stay
# under central's payload cap (protocols.codec.MAX_PAYLOAD, 256 KiB) and the broker's 1 MB.
UPLOAD_CHUNK_BYTES = 128 * 1024
PLAYLIST_SOURCE_CHARS = 100_000  # a playlist file; a real one is a few kB
Encoding = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
Names = Annotated[list[Name], msgspec.Meta(max_length=1000)]
When = Annotated[float, msgspec.Meta(ge=0.0)]


# -- dispatchers' requests ----------------------------------------------------------------------
class AckAlarm(RequestBase, tag="ack_alarm", frozen=True, kw_only=True):
    """Take an alarm: the dispatcher (the topic's user) and what they did are recorded."""

    alarm: Name
    note: Text = ""


class Assign(RequestBase, tag="assign", frozen=True, kw_only=True):
    """Assign a bus a trip, a block and/or a route (at least one): its next desired state."""

    bus: Name
    trip: Name | None = None
    block: Name | None = None
    route: Name | None = None


class AssignPlaylist(RequestBase, tag="playlist", frozen=True, kw_only=True):
    """Put a stored playlist into a bus's desired state; "" takes the ads off it."""

    bus: Name
    playlist: Name = ""


class SavePlaylist(RequestBase, tag="save_playlist", frozen=True, kw_only=True):
    """A simple playlist: one item per media (name or hash, in play order), all day."""

    id: Name
    media: Names
    seconds: Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)] = 10.0


class ImportPlaylist(RequestBase, tag="import_playlist", frozen=True, kw_only=True):
    """Store a playlist from the text of a TOML or JSON file (`name` says which file, for
    messages); `push`: publish the new revision to the buses that run it."""

    source: Annotated[str, msgspec.Meta(min_length=1, max_length=PLAYLIST_SOURCE_CHARS)]
    format: Literal["toml", "json"] = "json"
    name: Name = ""
    push: bool = False


class UploadedFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file the sender uploaded (`Upload`), with the name it goes by."""

    upload: UploadId
    name: Name


class ImportMedia(RequestBase, tag="import_media", frozen=True, kw_only=True):
    """Add uploaded files to the media library."""

    files: Annotated[list[UploadedFile], msgspec.Meta(min_length=1, max_length=1000)]


class Upload(RequestBase, tag="upload", frozen=True, kw_only=True):
    """A piece of a file for central to stage, for an import request to name by `id`: the
    bytes from `offset` of a file of `total` bytes. Pieces come in order; the one that ends
    the file carries the whole file's `sha256`. Only the sender's own requests can name it,
    and central drops it after a while (central/uploads.py)."""

    id: UploadId
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_UPLOAD_BYTES)]
    total: Annotated[int, msgspec.Meta(ge=0, le=MAX_UPLOAD_BYTES)]
    data: Annotated[bytes, msgspec.Meta(max_length=UPLOAD_CHUNK_BYTES)]
    sha256: Sha256 | None = None


class SendMessage(RequestBase, tag="message", frozen=True, kw_only=True):
    """A passenger message to targets "all", "route:R" or "bus:B"."""

    text_de: Text
    text_en: Text = ""
    priority: int = 0
    targets: Names
    valid_from: When | None = None
    valid_to: When | None = None


class WithdrawMessage(RequestBase, tag="withdraw_message", frozen=True, kw_only=True):
    id: Name


class SendCommand(RequestBase, tag="command", frozen=True, kw_only=True):
    """A command to one bus, expiring after `ttl_s` (1 s to a day)."""

    bus: Name
    command: BusCommand
    ttl_s: Annotated[float, msgspec.Meta(gt=0.0, le=86400.0)] = 300.0


class TempStopSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A temporary stop as a dispatcher names it; central gives it its id."""

    name: Name
    lat: Lat
    lon: Lon


class CreateDiversion(RequestBase, tag="divert", frozen=True, kw_only=True):
    """Divert a route (or some of its trips) from `valid_from` to `valid_to`."""

    route: Name
    trips: Names = msgspec.field(default_factory=list)
    skip: Names = msgspec.field(default_factory=list)
    temp_stops: Annotated[list[TempStopSpec], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    path: Annotated[list[tuple[Lat, Lon]], msgspec.Meta(max_length=5000)] = msgspec.field(
        default_factory=list
    )
    valid_from: When | None = None
    valid_to: When | None = None
    notice_de: Text = ""
    notice_en: Text = ""


class CancelDiversion(RequestBase, tag="cancel_diversion", frozen=True, kw_only=True):
    id: Name


class Detail(RequestBase, tag="detail", frozen=True, kw_only=True):
    """Everything the bus detail screen shows of one bus."""

    bus: Name


class Listing(RequestBase, tag="list", frozen=True, kw_only=True):
    """A list for pickers and the map; `route` narrows trips to one route."""

    what: Literal["routes", "trips", "blocks", "stops", "shapes", "playlists", "media", "messages"]
    route: Name | None = None


ReportKind = Literal["plays", "punctuality", "feedback"]


class Report(RequestBase, tag="report", frozen=True, kw_only=True):
    what: ReportKind
    days: Annotated[int, msgspec.Meta(ge=1, le=31)] = 1


# -- the tools' read-only requests: whole records, a page at a time -------------------------------
# The dashboard's `Listing`/`Report` give flat rows for its pickers and tables; a CLI tool prints
# whole records (nested lists and objects) as JSON lines, and a long list must not be cut to one
# MQTT message: it comes in pages.
class ListCommands(Records, tag="list_commands", frozen=True, kw_only=True):
    """Commands sent to buses with their status, oldest first; `bus` narrows to one."""

    bus: Name | None = None


class ListMessages(Records, tag="list_messages", frozen=True, kw_only=True):
    """Passenger messages, newest first, with the buses an active one goes to now."""

    status: Literal["active", "expired", "withdrawn"] | None = None


class ListDiversions(Records, tag="list_diversions", frozen=True, kw_only=True):
    """Diversions, newest first, with their status."""

    status: Literal["active", "expired", "cancelled"] | None = None


class DriverLog(Records, tag="driver_log", frozen=True, kw_only=True):
    """Messages to and from drivers and emergency alarms since `since`, oldest first."""

    bus: Name | None = None
    since: When


class ListMedia(Records, tag="list_media", frozen=True, kw_only=True):
    """The media library, one record per file."""


class ListPlaylists(Records, tag="list_playlists", frozen=True, kw_only=True):
    """Playlists in short: id, revision, items, schedules, timezone."""


class ShowPlaylist(Records, tag="show_playlist", frozen=True, kw_only=True):
    """One playlist whole (one record); refused if there is none of that id."""

    id: Name


class PlaysReport(Records, tag="plays_report", frozen=True, kw_only=True):
    """Proof of play from `first` to `last` (local days in `timezone`), per item, day, route
    and bus; `item` narrows to one."""

    first: dt.date
    last: dt.date
    timezone: Name = "UTC"
    item: Name | None = None


class ImportGtfs(RequestBase, tag="import_gtfs", frozen=True, kw_only=True):
    """Import an uploaded GTFS zip as the timetable; up to `max_listed` issues of each kind
    are listed in the answer. `name` is the feed's file name (for the record); `encoding`
    forces one for every file (default: UTF-8, else Windows-1252 with a warning)."""

    upload: UploadId
    name: Name = ""
    encoding: Encoding | None = None
    max_listed: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 20


# -- timetable versions and groups of buses (issue 14) ---------------------------------------------
Target = Annotated[str, msgspec.Meta(max_length=200)]  # "all", a bus id, "bus:B", "group:G"
Version = Annotated[int, msgspec.Meta(ge=1)]


class PublishTimetable(RequestBase, tag="publish_timetable", frozen=True, kw_only=True):
    """Put timetable `version` into the desired state of the buses `to` names ("all", a bus
    id or "bus:B", "group:G"); they switch to it at `valid_from` (None: at once)."""

    version: Version
    valid_from: When | None = None
    to: Annotated[list[Target], msgspec.Meta(min_length=1, max_length=1000)]


class SetGroup(RequestBase, tag="set_group", frozen=True, kw_only=True):
    """Create a named group of buses, or replace its members."""

    name: Name
    buses: Annotated[list[Name], msgspec.Meta(max_length=10_000)]


class DeleteGroup(RequestBase, tag="delete_group", frozen=True, kw_only=True):
    name: Name


class ListTimetables(Records, tag="list_timetables", frozen=True, kw_only=True):
    """Timetable versions, oldest first: imported when, from where, package hash and size,
    counts, and how many buses were given each."""


class ShowTimetable(Records, tag="show_timetable", frozen=True, kw_only=True):
    """One version (one record) and what changed against the one before it: routes, stops
    and trips added, removed and changed, with up to `max_listed` ids of each."""

    version: Version
    max_listed: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 20


class ListGroups(Records, tag="list_groups", frozen=True, kw_only=True):
    """Groups of buses with their members, by name."""


class ShowGroup(Records, tag="show_group", frozen=True, kw_only=True):
    """One group with its members (one record); refused if there is none of that name."""

    name: Name


class FleetHealth(Records, tag="fleet_health", frozen=True, kw_only=True):
    bus: Name | None = None  # each bus's newest health report (central/service/health_requests.py)


# The `Records` requests, as one type for the tools that page through their answers.
ReadRequest = (
    ListCommands
    | ListMessages
    | ListDiversions
    | DriverLog
    | ListMedia
    | ListPlaylists
    | ShowPlaylist
    | PlaysReport
    | ListTimetables
    | ShowTimetable
    | ListGroups
    | ShowGroup
    | release.RolloutStatus  # issue 16
    | release.BusReleases
    | live.AnnouncementStatus  # issue 17
    | people.ListPeople  # issue 18
    | people.AuditLog
    | operator.OperatorReport  # issue 18
    | operator.RouteReplay
)


ConfigKey = Annotated[str, msgspec.Meta(max_length=100)]  # "section.key" (config_keys.py)
ConfigValue = Annotated[str, msgspec.Meta(max_length=1000)] | int | float | bool


class SetConfig(RequestBase, tag="set_config", frozen=True, kw_only=True):
    """Set agent settings (`values`, by their agent.toml names) and drop others (`unset`: agent.toml
    rules again) in the desired configuration of each bus `buses` names: targets as a timetable
    publication takes them (a bus id, "bus:B", "group:G", "all"; central/groups.py). Central
    refuses a bad key form and the keys never set remotely (protocols/config_keys.py); the bus
    judges values."""

    buses: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=1000)]
    values: Annotated[dict[ConfigKey, ConfigValue], msgspec.Meta(max_length=200)] = msgspec.field(
        default_factory=dict
    )
    unset: Annotated[list[ConfigKey], msgspec.Meta(max_length=200)] = msgspec.field(
        default_factory=list
    )


class ShowConfig(RequestBase, tag="show_config", frozen=True, kw_only=True):
    """A bus's settings from central: desired, running (as the bus reports), refused and why."""

    bus: Name


# -- a command's answer, as the bus gave it (issue 16: `busfleet central logs` waits for it) --
class CommandAnswer(RequestBase, tag="command_answer", frozen=True, kw_only=True):
    """The status of command `id` sent to `bus` (sent, ok, failed, expired) and, once the bus
    answered, the data of its answer (a `logs` command's lines)."""

    bus: Name
    id: Name


Request = (
    AckAlarm
    | Assign
    | AssignPlaylist
    | SavePlaylist
    | ImportPlaylist
    | ImportMedia
    | Upload
    | SendMessage
    | WithdrawMessage
    | SendCommand
    | CreateDiversion
    | CancelDiversion
    | Detail
    | Listing
    | Report
    | ImportGtfs
    | ListCommands
    | ListMessages
    | ListDiversions
    | DriverLog
    | ListMedia
    | ListPlaylists
    | ShowPlaylist
    | PlaysReport
    | PublishTimetable
    | SetGroup
    | DeleteGroup
    | ListTimetables
    | ShowTimetable
    | ListGroups
    | ShowGroup
    | SetConfig
    | ShowConfig
    | CommandAnswer
    | release.StartRollout  # issue 16: software rollouts
    | release.CancelRollout
    | release.RolloutStatus
    | release.BusReleases
    | FleetHealth
    | live.LiveAnnounce  # issue 17: live announcements
    | live.AnnouncementStatus
    | people.SetRole  # issue 18: roles and the audit log
    | people.ListPeople
    | people.AuditLog
    | operator.OperatorReport  # issue 18: operator reports, route replay
    | operator.RouteReplay
)
REQUESTS: tuple[type[RequestBase], ...] = (
    AckAlarm,
    Assign,
    AssignPlaylist,
    SavePlaylist,
    ImportPlaylist,
    ImportMedia,
    Upload,
    SendMessage,
    WithdrawMessage,
    SendCommand,
    CreateDiversion,
    CancelDiversion,
    Detail,
    Listing,
    Report,
    ImportGtfs,
    ListCommands,
    ListMessages,
    ListDiversions,
    DriverLog,
    ListMedia,
    ListPlaylists,
    ShowPlaylist,
    PlaysReport,
    PublishTimetable,
    SetGroup,
    DeleteGroup,
    ListTimetables,
    ShowTimetable,
    ListGroups,
    ShowGroup,
    SetConfig,
    ShowConfig,
    CommandAnswer,
    *release.RELEASE_REQUESTS,  # issue 16
    FleetHealth,
    *live.ANNOUNCE_REQUESTS,  # issue 17
    *people.PEOPLE_REQUESTS,  # issue 18
    *operator.REPORT_REQUESTS,  # issue 18
)


class CentralPresence(msgspec.Struct, frozen=True, kw_only=True):
    """A central worker's presence, retained; its last will says online=False. A client asks
    only when some worker is online (central/client.py)."""

    v: int = SCHEMA_VERSION
    client_id: str
    online: bool
    t: float


class DispatchRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A request to central with its id; the dispatcher is the topic's user level (the
    broker account: the ACL allows no other), and central answers on the reply topic with
    the same `id`. `by`, when given, is who the client says asks: central refuses it unless
    it is the topic's account."""

    v: int = SCHEMA_VERSION
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    t: float
    request: Request
    by: Annotated[str, msgspec.Meta(max_length=64)] = ""


# A whole record as JSON (nested lists and objects), as a tool prints it.
Record = dict[str, Any]


class DispatchReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Central's answer: ok, or an error for people; scalar results, named tables of flat
    rows (for screens) and, to a `Records` request, a page of whole records.

    `failed` tells central's own trouble (a bug, its database) from a refusal (the request
    was wrong: fix it and ask again).
    """

    v: int = SCHEMA_VERSION
    id: str
    ok: bool
    t: float
    error: str = ""
    failed: bool = False
    result: dict[str, Scalar] = msgspec.field(default_factory=dict)
    tables: dict[str, list[dict[str, Scalar]]] = msgspec.field(default_factory=dict)
    records: list[Record] = msgspec.field(default_factory=list)


def described(request: RequestBase) -> str:
    """A request for the log: bytes as their length (an upload's piece is 128 KiB), strings
    quoted (a newline cannot forge a log line), at most 300 characters."""
    fields = ", ".join(
        f"{name}=<{len(value)} bytes>" if isinstance(value, bytes) else f"{name}={value!r}"
        for name, value in msgspec.structs.asdict(request).items()
    )
    text = f"{type(request).__name__}({fields})"
    return text if len(text) <= 300 else text[:299] + "…"
