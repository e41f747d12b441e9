"""The one vocabulary of requests to central and commands to buses (protocols/requests.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import msgspec
import pytest

from central.config import CentralConfig
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.announce_requests import AnnouncementStatus, LiveAnnounce
from protocols.errors import CodecError
from protocols.people_requests import AuditLog, ListPeople, SetRole
from protocols.release_requests import BusReleases, CancelRollout, RolloutStatus, StartRollout
from protocols.report_requests import OperatorReport, RouteReplay
from protocols.requests import (
    BUS_COMMANDS,
    COMMAND_NAMES,
    REQUESTS,
    AckAlarm,
    Announce,
    Assign,
    AssignPlaylist,
    CancelDiversion,
    CommandAnswer,
    CreateDiversion,
    DeleteGroup,
    Detail,
    DispatchReply,
    DispatchRequest,
    DriverLog,
    DriverMessage,
    FleetHealth,
    ImportGtfs,
    ImportMedia,
    ImportPlaylist,
    ListCommands,
    ListDiversions,
    ListGroups,
    Listing,
    ListMedia,
    ListMessages,
    ListPlaylists,
    ListTimetables,
    Logs,
    PlaysReport,
    PublishTimetable,
    Report,
    Request,
    Resend,
    Restart,
    SavePlaylist,
    SendCommand,
    SendMessage,
    SetConfig,
    SetGroup,
    ShowConfig,
    ShowGroup,
    ShowPlaylist,
    ShowTimetable,
    TempStopSpec,
    Upload,
    UploadedFile,
    WithdrawMessage,
    bus_command,
    command_args,
)
from protocols.schemas import Command

T0 = 1_800_000_000.0

RELEASE_SAMPLES: list[Request] = [
    StartRollout(version="0.2.0", to=["group:depot"], waves="1,10%,100%", halt_on=2),
    CancelRollout(rollout="6553f100-a1b2c3"),
    RolloutStatus(rollout="6553f100-a1b2c3"),
    BusReleases(offset=10),
]
SAMPLES: list[Request] = [
    AckAlarm(alarm="a-1", note="called the driver"),
    Assign(bus="bus-1", trip="T1", route="R1"),
    AssignPlaylist(bus="bus-1", playlist="sale"),
    SavePlaylist(id="sale", media=["red.png", "blue.png"], seconds=5.0),
    ImportPlaylist(source='id = "sale"', format="toml", name="sale.toml", push=True),
    ImportMedia(files=[UploadedFile(upload="0" * 32, name="a.png")]),
    Upload(id="0" * 32, offset=0, total=3, data=b"abc", sha256="0" * 64),
    SendMessage(text_de="Baustelle", text_en="Road works", priority=3, targets=["route:R1"]),
    WithdrawMessage(id="m-1"),
    SendCommand(bus="bus-1", command=Resend(since=T0 - 60), ttl_s=60.0),
    CreateDiversion(
        route="R1",
        skip=["S2"],
        temp_stops=[TempStopSpec(name="Lake St", lat=-16.92, lon=145.77)],
        path=[(-16.9, 145.7), (-16.91, 145.71)],
        valid_to=T0 + 7200,
        notice_de="Umleitung",
    ),
    CancelDiversion(id="d-1"),
    Detail(bus="bus-1"),
    Listing(what="trips", route="R1"),
    Report(what="punctuality", days=7),
    ImportGtfs(upload="1" * 32, name="cairns.zip", encoding="cp1252"),
    ListCommands(bus="bus-1", offset=40),
    ListMessages(status="active"),
    ListDiversions(status="cancelled"),
    DriverLog(bus="bus-1", since=T0 - 86400),
    ListMedia(),
    ListPlaylists(),
    ShowPlaylist(id="sale"),
    PlaysReport(first=dt.date(2025, 6, 1), last=dt.date(2025, 6, 30), timezone="Europe/Berlin"),
    PublishTimetable(version=2, valid_from=T0 + 60, to=["bus-1", "group:depot"]),
    SetGroup(name="depot", buses=["bus-1", "bus-2"]),
    DeleteGroup(name="depot"),
    ListTimetables(),
    ShowTimetable(version=2, max_listed=5),
    ListGroups(),
    ShowGroup(name="depot"),
    SetConfig(buses=["bus-1"], values={"telemetry.send_every_s": 5, "ads.enabled": False}),
    ShowConfig(bus="bus-1"),
    CommandAnswer(bus="bus-1", id="c-1"),
    *RELEASE_SAMPLES,  # issue 16: software rollouts
    FleetHealth(bus="bus-1"),
    LiveAnnounce(to=["group:g1", "route:R1"], de="Bitte vorne einsteigen", en="Board at front"),
    AnnouncementStatus(id="0123456789ab"),
    SetRole(name="vera", role="viewer"),  # issue 18: roles and the audit log
    ListPeople(),
    AuditLog(user="vera", since=T0),
    OperatorReport(kind="trips", first=dt.date(2026, 6, 1), last=dt.date(2026, 6, 30)),  # issue 18
    RouteReplay(bus="bus-1", since=T0, until=T0 + 3600, max_points=500),
]


def test_every_request_type_has_a_sample_here_and_a_handler_at_central(tmp_path: Path) -> None:
    assert {type(s) for s in SAMPLES} == set(REQUESTS)
    config = dataclasses.replace(CentralConfig(), db=str(tmp_path / "c.sqlite"))
    store = CentralStore(config.db)
    try:
        assert set(Dispatch(store, config, AlarmCenter(store)).handlers) == set(REQUESTS)
    finally:
        store.close()


@pytest.mark.parametrize("request_", SAMPLES, ids=lambda r: type(r).__name__)
def test_each_request_round_trips_through_the_codec(request_: Request) -> None:
    envelope = DispatchRequest(id="r-1", t=T0, request=request_)
    payload = codec.encode(envelope)
    assert codec.decode(DispatchRequest, payload) == envelope
    assert msgspec.json.decode(payload)["request"]["type"] == request_.__struct_config__.tag


def test_a_reply_round_trips_with_its_tables() -> None:
    reply = DispatchReply(id="r-1", ok=True, t=T0, result={"n": 1}, tables={"x": [{"a": "b"}]})
    assert codec.decode(DispatchReply, codec.encode(reply)) == reply


@pytest.mark.parametrize(
    "command",
    [
        Resend(since=T0),
        Announce(text="Next stop: Cairns"),
        Announce(de="Nächster Halt", en="Next stop", text="Nächster Halt", announcement="a1"),
        Restart(),
        DriverMessage(text="Hi"),
        Logs(since_s=7200.0, grep="link up", max_bytes=4096),
    ],
    ids=lambda c: type(c).__name__,
)
def test_each_bus_command_travels_as_a_command_and_comes_back_typed(command: object) -> None:
    assert isinstance(command, BUS_COMMANDS)
    name = str(command.__struct_config__.tag)  # type: ignore[attr-defined]
    wire = Command(id="c1", name=name, t=T0, expires=T0 + 60, args=command_args(command))  # type: ignore[arg-type]
    back = codec.decode(Command, codec.encode(wire))
    assert bus_command(back.name, back.args) == command
    assert name in COMMAND_NAMES


@pytest.mark.parametrize(
    ("name", "args", "why"),
    [
        ("self_destruct", {}, "unknown command"),
        ("resend", {"since": "x"}, "since"),
        ("announce", {}, "text"),
        ("driver_message", {"text": "x" * 501}, "text"),
    ],
)
def test_a_malformed_command_is_a_codec_error_saying_what(
    name: str, args: dict[str, str], why: str
) -> None:
    with pytest.raises(CodecError, match=why):
        bus_command(name, args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        ({"type": "message", "text_de": "x", "targets": "all"}, "targets"),
        ({"type": "report", "what": "salaries"}, "what"),
        ({"type": "command", "bus": "bus-1", "command": {"name": "announce"}}, "text"),
        ({"type": "command", "bus": "b", "command": {"name": "restart"}, "ttl_s": 1e9}, "ttl_s"),
        ({"type": "import_media", "files": []}, "files"),
        ({"type": "assign"}, "bus"),
    ],
)
async def test_a_bad_request_is_refused_with_a_reason_naming_the_field(
    tmp_path: Path, request_: dict[str, object], why: str
) -> None:
    config = dataclasses.replace(CentralConfig(), db=str(tmp_path / "c.sqlite"))
    store = CentralStore(config.db)
    try:
        dispatch = Dispatch(store, config, AlarmCenter(store))
        payload = msgspec.json.encode({"id": "r-bad", "t": T0, "request": request_})
        out = await dispatch.handle(topics.dispatch_request("alice"), payload, T0)
    finally:
        store.close()
    [(topic, body, retain)] = out  # the refusal, nothing else
    reply = codec.decode(DispatchReply, body)
    assert (topic, retain) == (topics.dispatch_reply("alice"), False)
    assert (reply.id, reply.ok, reply.failed) == ("r-bad", False, False)
    assert why in reply.error
    assert dispatch.counters["refused"] == 1


async def test_central_failing_on_its_side_says_failed_not_refused(tmp_path: Path) -> None:
    config = dataclasses.replace(CentralConfig(), db=str(tmp_path / "c.sqlite"))
    store = CentralStore(config.db)
    try:
        dispatch = Dispatch(store, config, AlarmCenter(store))

        def broken(*_: object) -> object:
            raise RuntimeError("disk on fire")

        dispatch.handlers[Detail] = broken  # type: ignore[assignment]
        envelope = DispatchRequest(id="r-1", t=T0, request=Detail(bus="bus-1"))
        out = await dispatch.handle(topics.dispatch_request("alice"), codec.encode(envelope), T0)
    finally:
        store.close()
    reply = codec.decode(DispatchReply, out[-1][1])
    assert not reply.ok and reply.failed and "disk on fire" in reply.error
    assert dispatch.counters["failed"] == 1
