"""Dispatchers' requests at central: checked, carried out, answered (no broker needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest

from central.config import CentralConfig
from central.media import MediaLibrary
from central.playlists import MAX_SOURCE_CHARS
from central.service.alarm_center import AlarmCenter, Outgoing
from central.service.dispatch import Dispatch
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.requests import (
    AckAlarm,
    Announce,
    Assign,
    Detail,
    DispatchReply,
    DispatchRequest,
    ImportPlaylist,
    Listing,
    Report,
    Request,
    SavePlaylist,
    SendCommand,
    SendMessage,
)
from protocols.schemas import Alarm, Command, DesiredState, Event, EventBatch, FleetEntry
from tests.ads_helpers import png

T0 = 1_800_000_000.0


@pytest.fixture
def dispatch(tmp_path: Path, central_db: str) -> Dispatch:
    """Every test here runs on both backends (SQLite and PostgreSQL)."""
    config = dataclasses.replace(CentralConfig(), db=central_db, media_dir=str(tmp_path / "media"))
    store = open_store(config.db)
    return Dispatch(store, config, AlarmCenter(store))


async def ask(
    d: Dispatch, request: Request, user: str = "alice"
) -> tuple[DispatchReply, list[Outgoing]]:
    envelope = DispatchRequest(id=f"r-{request.__struct_config__.tag}", t=T0, request=request)
    return await ask_raw(d, codec.encode(envelope), user)


async def ask_raw(
    d: Dispatch, payload: bytes, user: str = "alice"
) -> tuple[DispatchReply, list[Outgoing]]:
    """A request as bytes, as a peer may send it (central's own types cannot be wrong)."""
    out = await d.handle(topics.dispatch_request(user), payload, T0)
    *rest, (topic, body, retain) = out
    assert topic == topics.dispatch_reply(user) and not retain
    reply = codec.decode(DispatchReply, body)
    assert reply.id == msgspec.json.decode(payload)["id"]
    return reply, rest


def raw(request: dict[str, object]) -> bytes:
    return msgspec.json.encode({"id": "r-raw", "t": T0, "request": request})


async def test_an_acknowledgement_names_the_dispatcher_and_is_published_for_every_dashboard(
    dispatch: Dispatch,
) -> None:
    batch = EventBatch(bus="bus-1", events=[Event(seq=1, t=T0, kind="off_route", severity=3)])
    dispatch.alarms.on_events("bus-1", batch, FleetEntry(bus="bus-1", online=True), T0)
    [alarm] = dispatch.alarms.alarms()
    dispatch.alarms.take_outgoing()
    reply, out = await ask(dispatch, AckAlarm(alarm=alarm.id, note="called the driver"))
    assert reply.ok and reply.result["state"] == "acked"
    [(topic, payload, retain)] = out
    acked = codec.decode(Alarm, payload)
    assert (topic, retain) == (topics.alarm(alarm.id), True)
    assert (acked.acked_by, acked.ack_note, acked.state) == ("alice", "called the driver", "acked")
    again, out = await ask(dispatch, AckAlarm(alarm=alarm.id), user="bob")
    assert not again.ok and "already acknowledged by alice" in again.error and out == []


async def test_a_request_central_cannot_read_gets_no_answer_and_is_counted(
    dispatch: Dispatch,
) -> None:
    assert await dispatch.handle(topics.dispatch_request("alice"), b"{not json", T0) == []
    assert await dispatch.handle("busfleet/v1/dispatch/a/b/request", b"{}", T0) == []
    assert dispatch.counters["bad"] == 2


async def test_unknown_actions_and_missing_arguments_are_refused_with_a_reason(
    dispatch: Dispatch,
) -> None:
    reply, _ = await ask_raw(dispatch, raw({"type": "reboot_city"}))
    assert not reply.ok and "unknown action" in reply.error
    reply, _ = await ask(dispatch, Assign(bus="bus-1"))
    assert not reply.ok and "trip, a block or a route" in reply.error
    reply, _ = await ask(dispatch, Assign(bus="bad bus", route="R1"))
    assert not reply.ok and "invalid bus id" in reply.error
    bad = {"type": "command", "bus": "bus-1", "command": {"name": "self_destruct"}}
    reply, _ = await ask_raw(dispatch, raw(bad))
    assert not reply.ok and "unknown command" in reply.error


async def test_an_assignment_becomes_the_bus_desired_state_published_retained(
    dispatch: Dispatch,
) -> None:
    reply, out = await ask(dispatch, Assign(bus="bus-1", route="R1"))
    assert reply.ok and reply.result == {"bus": "bus-1", "version": 1}
    [(topic, payload, retain)] = out
    doc = codec.decode(DesiredState, payload)
    assert (topic, retain) == (topics.desired("bus-1"), True)
    assert doc.assignment is not None and doc.assignment.route_id == "R1" and doc.version == 1


async def test_a_command_is_stored_sent_to_the_bus_and_shown_in_its_detail(
    dispatch: Dispatch,
) -> None:
    reply, out = await ask(
        dispatch, SendCommand(bus="bus-1", command=Announce(text="Hello"), ttl_s=60)
    )
    assert reply.ok
    [(topic, payload, retain)] = out
    cmd = codec.decode(Command, payload)
    assert (topic, retain, cmd.name, cmd.args) == (
        topics.command("bus-1"),
        False,
        "announce",
        {"text": "Hello"},
    )
    assert cmd.expires == T0 + 60
    detail, _ = await ask(dispatch, Detail(bus="bus-1"))
    [row] = detail.tables["commands"]
    assert (row["id"], row["status"]) == (cmd.id, "sent")


async def test_a_passenger_message_to_all_reaches_every_known_bus(dispatch: Dispatch) -> None:
    for bus in ("bus-1", "bus-2"):
        await ask(dispatch, Assign(bus=bus, route="R1"))
    reply, out = await ask(
        dispatch,
        SendMessage(text_de="Baustelle", text_en="Road works", targets=["all"], valid_to=T0 + 3600),
    )
    assert reply.ok and reply.result["buses"] == 2
    docs = [codec.decode(DesiredState, p) for _, p, _ in out]
    assert sorted(d.bus for d in docs) == ["bus-1", "bus-2"]
    assert all(d.messages[0].text_en == "Road works" for d in docs)
    listed, _ = await ask(dispatch, Listing(what="messages"))
    assert [m["text_de"] for m in listed.tables["messages"]] == ["Baustelle"]


async def test_reports_answer_within_their_window(dispatch: Dispatch) -> None:
    rows = [
        ("bus-1", 1, T0 - 100, "departed", 0, '{"route": "R1", "delay_s": 30}', 0, T0),
        ("bus-1", 2, T0 - 50, "departed", 0, '{"route": "R1", "delay_s": 600}', 0, T0),
        ("bus-1", 3, T0 - 9 * 86400, "departed", 0, '{"route": "R1", "delay_s": 0}', 0, T0),
        ("bus-1", 4, T0 - 10, "passenger_feedback", 0, '{"category": "wifi", "text": "x"}', 0, T0),
    ]
    dispatch.store.add_events(rows)
    reply, _ = await ask(dispatch, Report(what="punctuality", days=1))
    assert reply.ok
    [row] = reply.tables["punctuality"]
    assert row == {
        "route": "R1",
        "departures": 2,
        "on_time_pct": 50.0,
        "mean_delay_s": 315,
        "p90_delay_s": 600,
    }
    reply, _ = await ask(dispatch, Report(what="feedback", days=1))
    assert [(r["category"], r["text"]) for r in reply.tables["feedback"]] == [("wifi", "x")]
    reply, _ = await ask_raw(dispatch, raw({"type": "report", "what": "punctuality", "days": 99}))
    assert not reply.ok and "days" in reply.error


async def test_a_simple_playlist_is_saved_from_media_names_with_a_new_revision_each_change(
    dispatch: Dispatch,
) -> None:
    library = MediaLibrary(dispatch.store, dispatch.config.media_dir)
    library.import_bytes(png(2, 2, (255, 0, 0)), "red.png")
    library.import_bytes(png(2, 2, (0, 0, 255)), "blue.png")
    reply, out = await ask(dispatch, SavePlaylist(id="sale", media=["red.png", " blue.png"]))
    assert reply.ok and reply.result == {"id": "sale", "revision": 1} and out == []
    reply, _ = await ask(dispatch, SavePlaylist(id="sale", media=["blue.png"], seconds=5))
    assert reply.result["revision"] == 2
    listed, _ = await ask(dispatch, Listing(what="playlists"))
    [row] = listed.tables["playlists"]
    assert (row["media"], row["seconds"], row["items"]) == ("blue.png", 5.0, 1)
    reply, _ = await ask(dispatch, SavePlaylist(id="sale", media=["green.png"]))
    assert not reply.ok and "green.png" in reply.error


async def test_import_requests_name_no_path_on_centrals_machine(dispatch: Dispatch) -> None:
    # A path that exists and one that does not get the same answer: nothing can be probed.
    answers = set()
    for request in (
        {"type": "import_gtfs", "path": "/etc/hostname"},
        {"type": "import_gtfs", "path": "/no/such/file"},
        {"type": "import_playlist", "path": "/etc/hostname"},
        {"type": "import_playlist", "path": "/no/such/file"},
        {"type": "import_media", "paths": ["/etc/hostname"]},
        {"type": "import_media", "paths": ["/no/such/file"]},
    ):
        reply, out = await ask_raw(dispatch, raw(request))
        assert not reply.ok and out == []
        assert "/etc" not in reply.error and "/no/such" not in reply.error
        answers.add((request["type"], reply.error))
    assert len(answers) == 3  # one answer per type, whatever the path


async def test_a_playlist_comes_as_text_within_a_cap(dispatch: Dispatch) -> None:
    library = MediaLibrary(dispatch.store, dispatch.config.media_dir)
    library.import_bytes(png(2, 2, (255, 0, 0)), "red.png")
    source = (
        'id = "sale"\ntimezone = "UTC"\n[[items]]\nid = "a"\nmedia = "red.png"\n'
        'duration_s = 5\n[[schedules]]\nid = "all"\nitems = ["a"]\n'
    )
    reply, _ = await ask(dispatch, ImportPlaylist(source=source, format="toml", name="s.toml"))
    assert reply.ok and reply.result["id"] == "sale" and reply.result["revision"] == 1
    reply, _ = await ask(dispatch, ImportPlaylist(source="[1, 2]", name="list.json"))
    assert not reply.ok and "list.json: a playlist is a table/object" in reply.error
    big = {"type": "import_playlist", "source": " " * (MAX_SOURCE_CHARS + 1)}
    reply, _ = await ask_raw(dispatch, raw(big))
    assert not reply.ok and "length <= 100000" in reply.error
