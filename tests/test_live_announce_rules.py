"""Live announcements (issue 17), part by part: central's rules and requests (on SQLite and
PostgreSQL), the bus's `announce` handler (spoken, then shown at the moment speech begins),
the display's banner, and the dashboard's form. tests/test_live_announce.py runs it all live.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest

from central.config import CentralConfig
from central.dashboard.app import DashboardApp
from central.service.alarm_center import AlarmCenter, Outgoing
from central.service.dispatch import Dispatch
from central.store.pg_store import open_store
from onboard.audio.api import LIVE, OnStart, Utterance
from onboard.display.model import LIVE_MIN_S, LiveBanner, display_state, live_until
from onboard.display.server import Display
from onboard.link.commands import Commands
from onboard.link.outbox import Outbox
from onboard.portal.content import Announcement
from onboard.remote import AgentCommands
from protocols import codec, topics
from protocols.announce_requests import AnnouncementStatus, LiveAnnounce
from protocols.requests import (
    Announce,
    Assign,
    BusCommand,
    DispatchReply,
    DispatchRequest,
    Request,
    SetGroup,
    bus_command,
)
from protocols.schemas import Command, Event

T0 = 1_800_000_000.0


# -- central --------------------------------------------------------------------------------------
@pytest.fixture
def dispatch(central_db: str) -> Dispatch:
    """On both backends (SQLite and PostgreSQL)."""
    config = dataclasses.replace(CentralConfig(), db=central_db)
    store = open_store(config.db)
    return Dispatch(store, config, AlarmCenter(store))


async def ask(
    d: Dispatch, request: Request, now: float = T0
) -> tuple[DispatchReply, list[Outgoing]]:
    envelope = DispatchRequest(id="r-1", t=now, request=request)
    payload = codec.encode(envelope)
    *out, (_, body, _) = await d.handle(topics.dispatch_request("alice"), payload, now)
    return codec.decode(DispatchReply, body), out


async def test_central_sends_each_targeted_bus_one_command_with_one_announcement_id(
    dispatch: Dispatch,
) -> None:
    for bus, route in (("bus-r1", "R1"), ("bus-r2", "R2"), ("bus-g1", "R2")):
        assert (await ask(dispatch, Assign(bus=bus, route=route)))[0].ok
    assert (await ask(dispatch, SetGroup(name="depot", buses=["bus-g1", "bus-g2"])))[0].ok
    request = LiveAnnounce(
        to=["route:R1", "group:depot"], de=" Bitte aussteigen ", en="Please alight", ttl_s=60
    )
    reply, out = await ask(dispatch, request)
    assert reply.ok, reply.error
    ann = str(reply.result["announcement"])
    assert reply.result["buses"] == 3 and reply.result["expires"] == T0 + 60
    assert [r["bus"] for r in reply.tables["buses"]] == ["bus-g1", "bus-g2", "bus-r1"]
    sent = {topic: codec.decode(Command, payload) for topic, payload, _ in out}
    assert set(sent) == {topics.command(b) for b in ("bus-g1", "bus-g2", "bus-r1")}
    for cmd in sent.values():
        assert (cmd.name, cmd.expires) == ("announce", T0 + 60)
        command = bus_command(cmd.name, cmd.args)
        assert command == Announce(
            de="Bitte aussteigen", en="Please alight", text="Bitte aussteigen", announcement=ann
        )
    assert len({c.id for c in sent.values()}) == 3

    # Tracked: one bus answers ok (delivered), the others expire.
    store = dispatch.store
    store.answer_command("bus-r1", sent[topics.command("bus-r1")].id, "ok", None, T0 + 1)
    assert store.expire_commands(T0 + 61) == 2
    reply, _ = await ask(dispatch, AnnouncementStatus(id=ann), T0 + 62)
    assert reply.ok, reply.error
    assert [(r["bus"], r["status"]) for r in reply.records] == [
        ("bus-g1", "expired"),
        ("bus-g2", "expired"),
        ("bus-r1", "delivered"),
    ]


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (LiveAnnounce(to=["all"], de="   "), "needs a German text"),
        (LiveAnnounce(to=["group:nobody"], de="Hallo"), "no group 'nobody'"),
        (LiveAnnounce(to=["route:R9"], de="Hallo"), "route:R9: no bus is there now"),
        (LiveAnnounce(to=["route:"], de="Hallo"), "needs a route id"),
        (LiveAnnounce(to=["bus:bad bus"], de="Hallo"), "invalid bus id"),
        (LiveAnnounce(to=["all"], de="x" * 501), "de"),
        (LiveAnnounce(to=["all"], de="Hallo", ttl_s=0.0), "ttl_s"),
        (LiveAnnounce(to=[], de="Hallo"), "to"),
    ],
)
async def test_central_refuses_an_announcement_it_cannot_send_and_says_why(
    dispatch: Dispatch, request_: LiveAnnounce, why: str
) -> None:
    reply, out = await ask(dispatch, request_)
    assert not reply.ok and why in reply.error and out == []
    assert dispatch.store.commands() == []


async def test_the_status_of_an_unknown_announcement_is_refused(dispatch: Dispatch) -> None:
    reply, _ = await ask(dispatch, AnnouncementStatus(id="0123456789ab"))
    assert not reply.ok and "no announcement '0123456789ab'" in reply.error


# -- the bus --------------------------------------------------------------------------------------
class LaterSpeaker:
    """A speaker whose playback begins when the test says (`begin`)."""

    def __init__(self) -> None:
        self.queued: list[tuple[Utterance, OnStart | None]] = []

    def say(self, utterance: Utterance, on_start: OnStart | None = None) -> None:
        self.queued.append((utterance, on_start))

    def begin(self) -> None:
        utterance, on_start = self.queued.pop(0)
        if on_start is not None:
            on_start(utterance)


class Bus:
    def __init__(self, tmp_path: Path) -> None:
        self.outbox = Outbox(tmp_path / "agent.sqlite")
        self.speaker = LaterSpeaker()
        self.display = Display(port=0, clock=lambda: T0)
        self.events: list[tuple[str, dict[str, object]]] = []
        self.remote = AgentCommands(
            self.outbox, lambda: self.speaker, lambda: self.display, self._record
        )
        self.commands = Commands(self.outbox, self.remote.handlers())

    def _record(self, kind: str, data: dict[str, object]) -> None:
        self.events.append((kind, data))

    def receive(self, cmd_id: str, command: BusCommand | dict[str, object]) -> str:
        args = command if isinstance(command, dict) else msgspec.to_builtins(command)
        args = {k: v for k, v in args.items() if k != "name" and v is not None}
        payload = codec.encode(
            Command(id=cmd_id, name="announce", t=T0, expires=T0 + 60, args=args)  # type: ignore[arg-type]
        )
        result = self.commands.receive(payload, now=T0)
        assert result is not None
        return result.result

    def acks(self) -> list[dict[str, object]]:
        rows = self.outbox.db.execute("SELECT body FROM outbox WHERE kind = 'cmd_ack'")
        return [codec.decode(Event, bytes(body)).data for (body,) in rows]  # type: ignore[misc]


@pytest.fixture
def bus(tmp_path: Path) -> Bus:
    return Bus(tmp_path)


def test_the_bus_speaks_first_and_shows_it_the_moment_its_playback_begins(bus: Bus) -> None:
    live = Announce(de="Umleitung", en="Diversion", text="Umleitung", announcement="a1b2c3d4e5f6")
    assert bus.receive("c1", live) == "ok"
    [(utterance, _)] = bus.speaker.queued
    assert utterance == Utterance(
        kind="live", texts={"de": "Umleitung", "en": "Diversion"}, priority=LIVE, ref="a1b2c3d4e5f6"
    )
    # Queued, not yet spoken: nothing shown anywhere.
    assert bus.display.state.live is None and bus.events == [] and bus.remote.announcements == []
    bus.speaker.begin()
    assert bus.display.state.live == LiveBanner(
        "a1b2c3d4e5f6", "Umleitung", "Diversion", live_until(T0, "Umleitung", "Diversion")
    )
    assert bus.remote.announcements == [Announcement("Umleitung", "Diversion")]
    assert bus.events == [
        ("live_announcement", {"id": "a1b2c3d4e5f6", "de": "Umleitung", "en": "Diversion"})
    ]


def test_the_bus_takes_an_older_centrals_text_as_german_with_the_command_id(bus: Bus) -> None:
    assert bus.receive("old-1", {"text": "  Hallo  "}) == "ok"
    [(utterance, _)] = bus.speaker.queued
    assert (utterance.texts, utterance.ref) == ({"de": "Hallo"}, "old-1")
    bus.speaker.begin()
    live = bus.display.state.live
    assert live is not None and (live.id, live.text_de, live.text_en) == ("old-1", "Hallo", "")


@pytest.mark.parametrize("args", [{}, {"de": "   "}, {"en": "English only"}, {"de": "x" * 501}])
def test_an_announcement_without_a_german_text_fails_with_a_reason_and_says_nothing(
    bus: Bus, args: dict[str, object]
) -> None:
    assert bus.receive("bad", args) == "failed"
    [ack] = bus.acks()
    assert "de" in str(ack["reason"])
    assert bus.speaker.queued == [] and bus.display.state.live is None


def test_an_audio_that_refuses_fails_the_command_and_nothing_is_shown(tmp_path: Path) -> None:
    class Broken:
        def say(self, utterance: Utterance, on_start: OnStart | None = None) -> None:
            raise RuntimeError("the queue is closed")

    shown: list[object] = []
    remote = AgentCommands(Outbox(tmp_path / "a.sqlite"), Broken, record=lambda *a: shown.append(a))
    cmd = Command(id="c1", name="announce", t=T0, expires=T0 + 60, args={"de": "Hallo"})
    result = remote.announce(cmd)
    assert (result.result, "the queue is closed" in result.reason) == ("failed", True)
    assert shown == [] and remote.announcements == []


def test_a_bus_without_a_speaker_shows_it_at_once(tmp_path: Path) -> None:
    display = Display(port=0, clock=lambda: T0)
    remote = AgentCommands(Outbox(tmp_path / "a.sqlite"), None, lambda: display)
    cmd = Command(id="c1", name="announce", t=T0, expires=T0 + 60, args={"de": "Hallo"})
    assert remote.announce(cmd).result == "ok"
    assert display.state.live is not None and display.state.live.text_de == "Hallo"


# -- the display ----------------------------------------------------------------------------------
def test_the_banner_stays_at_least_half_a_minute_longer_for_a_longer_text_then_goes() -> None:
    assert live_until(T0, "Kurz", "") == T0 + LIVE_MIN_S
    long_de = "Wegen eines Unfalls fährt diese Linie heute ab Hauptbahnhof über Nordend. " * 4
    assert live_until(T0, long_de, long_de) > T0 + LIVE_MIN_S + 20  # 592 characters spoken
    banner = LiveBanner("a", "Kurz", "", T0 + 30)

    def shown(t: float) -> LiveBanner | None:
        return display_state(None, (), t, live=banner).live

    assert (shown(T0), shown(T0 + 29.9), shown(T0 + 30)) == (banner, banner, None)


def test_the_display_clips_a_long_text_and_shows_german_when_english_is_all_it_got() -> None:
    display = Display(port=0, clock=lambda: T0)
    banner = display.show_live("a", "  ", "Only English")
    assert (banner.text_de, banner.text_en) == ("Only English", "Only English")
    banner = display.show_live("b", "y" * 900)
    assert len(banner.text_de) == 500 and banner.text_de.endswith("…")
    assert display.state.live == banner


# -- the dashboard --------------------------------------------------------------------------------
async def test_the_dashboard_key_v_sends_a_live_announcement_central_takes(
    dispatch: Dispatch,
) -> None:
    assert (await ask(dispatch, SetGroup(name="north", buses=["bus-n1", "bus-n2"])))[0].ok
    asked: list[Request] = []
    replies: list[DispatchReply] = []

    async def central(request: DispatchRequest) -> DispatchReply:
        asked.append(request.request)
        reply, _ = await ask(dispatch, request.request)
        replies.append(reply)
        return reply

    app = DashboardApp(CentralConfig(), connect=False, clock=lambda: T0, handler=central)
    async with app.run_test(size=(80, 30)) as pilot:
        await pilot.press("v", *"Bitte vorne einsteigen", "enter", *"Board at front", "enter")
        await pilot.press("home", "ctrl+k", *"group:north", "ctrl+s")  # replaces "all"
        await pilot.pause()
        await app.workers.wait_for_complete()
    # The screens' own lookups (stop names, routes, playlists) aside: one announcement asked.
    announced = [r for r in asked if isinstance(r, LiveAnnounce)]
    assert announced == [
        LiveAnnounce(
            to=["group:north"], de="Bitte vorne einsteigen", en="Board at front", ttl_s=120.0
        )
    ]
    [reply] = [r for q, r in zip(asked, replies, strict=True) if isinstance(q, LiveAnnounce)]
    assert reply.ok and reply.result["buses"] == 2
