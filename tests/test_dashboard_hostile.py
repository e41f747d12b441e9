"""Hostile text from buses and passengers is shown as text on every dashboard screen.

A passenger's feedback `[/] ... [@click=app.quit]`, a bus event of kind `[/]` or an alarm
raised at `t=1e20` used to crash every dispatcher's dashboard (Textual read the text as
markup; the clock overflowed). Here the hostile data goes in where a bus puts it: through
central's real ingest and dispatch code on a real SQLite store with the Cairns timetable
(events, feedback, command answers, the reported state, the media library and a playlist).
What central's schemas would refuse today (an alarm at 1e20, a bus id with brackets) is
handed to the dashboard as its link would post it, because the dashboard must not depend on
central's checks. Each screen is then drawn under Textual's pilot; the app must still run and
show the hostile text literally.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.command import CommandPalette
from textual.content import Content
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.widgets._data_table import default_cell_formatter  # how a cell is drawn

from central.config import CentralConfig
from central.dashboard.app import DashboardApp, create_app
from central.dashboard.messages import BusAction, LinkStatus
from central.dashboard.screens.bus_detail import BusDetailScreen
from central.dashboard.screens.map import MapScreen
from central.dashboard.screens.media import MediaScreen
from central.dashboard.screens.reports import ReportsScreen
from central.dashboard.text import clock, plain
from central.dashboard.widgets.alarm_table import AlarmTable
from central.dashboard.widgets.braille_map import BrailleMap
from central.dashboard.widgets.fleet_table import FleetTable
from central.gtfs_import import import_gtfs
from central.media import MediaLibrary
from central.playlists import build_playlist, save_playlist
from central.service.dispatch import Dispatch
from central.service.ingest import Ingest
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.requests import DispatchReply, DispatchRequest, Restart, SendCommand
from protocols.schemas import (
    Alarm,
    Assignment,
    Event,
    EventBatch,
    FleetEntry,
    JourneyStatus,
    ReportedState,
)
from tests.ads_helpers import png
from tests.conftest import DATA

T0 = 1_800_000_000.0
SIZE = (220, 50)
BUS = "bus-h1"  # a real bus id: central's topics refuse others
CLICK = "[@click=app.quit]"
# Each of these is markup that Textual would act on: close a tag never opened (MarkupError),
# a link that quits, styles, a template variable, an upper-case tag.
HOSTILE = f"[/]{CLICK}quit[/] [b]bold[/b] [$x] [B]up[/B] \\[i]"
WILD_BUS = "b[/]x"  # a bus id no topic carries, as a broken or future central might publish
FAR = 1e20  # seconds: the year 3e12, beyond what any clock formats


def literal(text: str) -> bool:
    return HOSTILE in text


@dataclasses.dataclass
class Central:
    store: CentralStore
    ingest: Ingest
    dispatch: Dispatch


def publish(ingest: Ingest, topic: str, doc: Any) -> None:
    ingest.handle(topic, codec.encode(doc), T0)


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    workdir = tmp_path_factory.mktemp("central")
    store = CentralStore(workdir / "central.sqlite")
    import_gtfs(store, DATA / "gtfs" / "cairns_gtfs.zip", now=T0)
    config = dataclasses.replace(
        CentralConfig(), db=str(workdir / "central.sqlite"), media_dir=str(workdir / "media")
    )
    ingest = Ingest(store)
    dispatch = Dispatch(store, config, ingest.alarms)
    # The bus: an alarm of a kind of its own, a passenger's feedback, an emergency far ahead.
    events = [
        Event(seq=1, t=T0 - 50, kind=HOSTILE, severity=3, data={"text": HOSTILE}),
        Event(
            seq=2,
            t=T0 - 40,
            kind="passenger_feedback",
            data={"category": HOSTILE, "text": HOSTILE},
        ),
        Event(seq=3, t=T0 - 30, kind="departed", data={"route": HOSTILE, "delay_s": 60}),
    ]
    publish(ingest, topics.events(BUS), EventBatch(bus=BUS, events=events))
    # A command, answered by the bus with a hostile reason.
    out = dispatch_now(dispatch, SendCommand(bus=BUS, command=Restart()))
    command_id = str(out.result["id"])
    answer = Event(
        seq=4,
        t=T0 - 20,
        kind="cmd_ack",
        data={"id": command_id, "result": "failed", "reason": HOSTILE},
    )
    publish(ingest, topics.command_ack(BUS), EventBatch(bus=BUS, events=[answer]))
    # What it says it runs: every text of it hostile.
    reported = ReportedState(
        bus=BUS,
        version=1,
        t=T0 - 10,
        assignment=Assignment(route_id=HOSTILE, trip_id=HOSTILE, block_id=HOSTILE),
        playlist=HOSTILE,
        error=HOSTILE,
        rejected_version=2,
        counters={HOSTILE: 7},
        journey=JourneyStatus(t=T0 - 10, trip_id=HOSTILE, route_id=HOSTILE, stop_id=HOSTILE),
    )
    publish(ingest, topics.reported(BUS), reported)
    # Media and a playlist named by whoever imported them.
    library = MediaLibrary(store, Path(config.media_dir))
    library.import_bytes(png(4, 4, (200, 0, 0)), HOSTILE)
    source = {
        "id": "hostile",
        "timezone": "Australia/Brisbane",
        "items": [{"id": "i1", "media": HOSTILE, "duration_s": 8, "name": HOSTILE}],
        "schedules": [{"id": "all", "items": ["i1"]}],
    }
    save_playlist(store, build_playlist(library, source))
    yield Central(store, ingest, dispatch)
    store.close()


def dispatch_now(dispatch: Dispatch, ask: Any) -> DispatchReply:
    import asyncio

    request = DispatchRequest(id="r-setup", t=T0, request=ask)
    out = asyncio.run(dispatch.handle(topics.dispatch_request("eve"), codec.encode(request), T0))
    return codec.decode(DispatchReply, out[-1][1])


def published_alarms(central: Central) -> dict[str, Alarm | None]:
    """What central publishes on the alarm topics (all of them, as after a reconnect),
    decoded as the dashboard's link does."""
    central.ingest.alarms.republish()
    out: dict[str, Alarm | None] = {}
    for topic, payload, _retain in central.ingest.alarms.take_outgoing():
        alarm_id = topic.rsplit("/", 1)[-1]
        out[alarm_id] = codec.decode(Alarm, payload) if payload else None
    return out


def wild() -> tuple[list[FleetEntry], dict[str, Alarm | None]]:
    """What no central publishes today but a dashboard must survive: built without checks."""
    entry = FleetEntry(
        bus=WILD_BUS,
        online=True,
        last_seen=FAR,
        t=FAR,
        lat=-16.92,
        lon=145.77,
        speed=1e300,
        route_id=HOSTILE,
        trip_id=HOSTILE,
        stop_id=HOSTILE,
        delay_s=2**62,
    )
    far_away = FleetEntry(bus="bus-far", online=True, last_seen=T0, lat=1e300, lon=-1e300)
    alarm = Alarm(
        id="wild",
        bus=WILD_BUS,
        kind=HOSTILE,
        subject=HOSTILE,
        severity=4,
        state="active",
        raised_t=FAR,
        t=FAR,
        text=HOSTILE,
        cleared_t=-FAR,
    )
    acked = Alarm(
        id="wild-acked",
        bus=BUS,
        kind="emergency",
        severity=4,
        state="acked",
        raised_t=-FAR,
        t=T0,
        text=HOSTILE,
        acked_by=HOSTILE,
        ack_note=HOSTILE,
        ack_t=FAR,
    )
    return [entry, far_away], {"wild": alarm, "wild-acked": acked}


def make_app(central: Central) -> DashboardApp:
    async def handler(request: DispatchRequest) -> DispatchReply:
        out = await central.dispatch.handle(
            topics.dispatch_request("eve"), codec.encode(request), T0
        )
        return codec.decode(DispatchReply, out[-1][1])

    return create_app(CentralConfig(), user="eve", connect=False, clock=lambda: T0, handler=handler)


def feed(app: DashboardApp, central: Central) -> None:
    entries, alarms = wild()
    app.apply_update(central.ingest.take_dirty() + entries, None, published_alarms(central))
    app.apply_update([], None, alarms)
    app.stop_names = {HOSTILE: HOSTILE}


def screen_text(app: DashboardApp, path: Path) -> str:
    """The text on the screen as drawn (saved as SVG, to look at)."""
    app.save_screenshot(str(path))
    parts = re.findall(r"<text[^>]*>(.*?)</text>", path.read_text(), re.S)
    return html.unescape("".join(parts)).replace("\xa0", " ")


def drawn(widget: Widget) -> str:
    """What a Static draws (its content as Textual renders it, markup applied if any)."""
    return str(widget.render())


def cells(table: DataTable[Any]) -> list[str]:
    """Every cell of a table as Textual draws it (a str cell is read as markup)."""
    out = []
    for i in range(table.row_count):
        out += [default_cell_formatter(c).plain for c in table.get_row_at(i)]  # type: ignore[union-attr]
    return out


def statics(widgets: Iterable[Widget]) -> str:
    return "\n".join(drawn(w) for w in widgets)


async def settle(app: DashboardApp, pilot: Any, seconds: float = 0.3) -> None:
    await pilot.pause(seconds)
    assert app.is_running, "the dashboard exited"


async def test_hostile_text_is_shown_literally_on_the_fleet_alarms_and_map_screens(
    central: Central, output_dir: Path
) -> None:
    app = make_app(central)
    async with app.run_test(size=SIZE) as pilot:
        feed(app, central)
        await settle(app, pilot)
        fleet = screen_text(app, output_dir / "hostile-fleet.svg")
        table = app.screen.query_one(FleetTable)
        assert WILD_BUS in table.row_keys() and table.cell(WILD_BUS, "trip") == HOSTILE
        assert table.cell(WILD_BUS, "seen") == "0s"  # seen "in the future": not negative
        assert WILD_BUS in fleet and "[/]" in fleet
        banner = drawn(app.screen.query_one("#banner"))
        assert WILD_BUS in banner and HOSTILE[:20] in banner

        await pilot.press("2")  # the alarms: hostile kinds, notes, times out of range
        await settle(app, pilot)
        alarms = app.screen.query_one(AlarmTable)
        shown = cells(alarms)
        assert any(literal(c) for c in shown), shown
        assert "?" in shown  # raised at 1e20: a time no clock shows
        await pilot.press("h")  # closed ones too
        await settle(app, pilot)
        screen_text(app, output_dir / "hostile-alarms.svg")

        await pilot.press("3")  # the map: labels beside the buses, one far off the globe
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, MapScreen)
        screen.focus_bus(WILD_BUS)
        for _ in range(5):
            await pilot.press("plus")
        await settle(app, pilot)
        assert f" {WILD_BUS}" in str(screen.query_one(BrailleMap).render())
        assert WILD_BUS in drawn(screen.query_one("#map-status"))
        await pilot.press("escape", "0")  # fit the fleet: the bus off the globe is left out
        await settle(app, pilot)
        assert "●" in str(screen.query_one(BrailleMap).render()), "the map lost the fleet"
        screen_text(app, output_dir / "hostile-map.svg")


async def test_hostile_text_is_shown_literally_on_the_bus_detail(
    central: Central, output_dir: Path
) -> None:
    app = make_app(central)
    async with app.run_test(size=SIZE) as pilot:
        feed(app, central)
        app.post_message(BusAction(BUS, "open"))
        await settle(app, pilot, 0.6)
        screen = app.screen
        assert isinstance(screen, BusDetailScreen) and screen.detail is not None
        boxes = statics(screen.query(Static))
        for must in ("refused: " + HOSTILE, f"next stop {HOSTILE}", f"(runs {HOSTILE})"):
            assert must in boxes, must
        assert HOSTILE in drawn(screen.query_one("#detail-title"))  # the open alarm's kind
        events = cells(screen.query_one("#events", DataTable))
        assert HOSTILE in events and any(HOSTILE in c for c in events)
        commands = cells(screen.query_one("#commands", DataTable))
        assert HOSTILE in commands
        screen_text(app, output_dir / "hostile-detail.svg")
        app.post_message(BusAction(WILD_BUS, "open"))  # a bus central knows nothing about
        await settle(app, pilot, 0.6)
        assert WILD_BUS in drawn(app.screen.query_one("#detail-title"))


async def test_hostile_text_is_shown_literally_in_reports_media_and_the_palette(
    central: Central, output_dir: Path
) -> None:
    app = make_app(central)
    async with app.run_test(size=SIZE) as pilot:
        feed(app, central)
        await pilot.press("4", "b")  # reports -> the passenger feedback inbox
        await settle(app, pilot, 0.5)
        screen = app.screen
        assert isinstance(screen, ReportsScreen) and screen.what == "feedback"
        feedback = cells(screen.query_one(DataTable))
        assert feedback.count(HOSTILE) == 2, feedback  # category and text
        screen_text(app, output_dir / "hostile-feedback.svg")
        await pilot.press("u")  # punctuality: the route a bus says it departed on
        await settle(app, pilot, 0.5)
        assert HOSTILE in cells(screen.query_one(DataTable))

        await pilot.press("5")
        await settle(app, pilot, 0.5)
        media = app.screen
        assert isinstance(media, MediaScreen)
        assert HOSTILE in cells(media.query_one("#media", DataTable))
        assert HOSTILE in cells(media.query_one("#playlists", DataTable))
        screen_text(app, output_dir / "hostile-media.svg")

        await pilot.press("1", "k")  # acknowledge: the form names the alarm
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.press(*"acknowledge")
        await settle(app, pilot, 0.6)
        palette = app.screen
        assert isinstance(palette, CommandPalette)
        prompts = screen_text(app, output_dir / "hostile-palette.svg")
        assert f"Acknowledge {HOSTILE[:12]}" in prompts, prompts
        await pilot.press("escape")
        await pilot.press("question_mark")  # help: its keys include [ and ]
        await settle(app, pilot)
        assert "[" in screen_text(app, output_dir / "hostile-help.svg")


async def test_a_new_alarm_with_hostile_text_is_announced_literally(central: Central) -> None:
    app = make_app(central)
    async with app.run_test(size=SIZE) as pilot:
        app.on_link_status(LinkStatus("eve@test", connected=True))  # new alarms from now on
        alarm = Alarm(
            id="new",
            bus=BUS,
            kind=HOSTILE,
            severity=4,
            state="active",
            raised_t=T0,
            t=T0,
            text=HOSTILE,
        )
        app.apply_update([], None, {"new": alarm})
        await settle(app, pilot)
        notes = list(app._notifications)
        assert notes and all(not n.markup for n in notes)
        assert any(HOSTILE in n.message for n in notes)


def test_plain_text_and_clock_never_fail() -> None:
    for text in (HOSTILE, "[", "]", "\\", "[b]", "[/]", "[@click=app.quit]"):
        shown = plain(text)
        assert isinstance(shown, Text) and shown.plain == text  # markup kept as characters
        assert Content.from_rich_text(shown).plain == text  # and drawn as such by Textual
    shown = plain("a\x1b[31mred\x07")  # a terminal escape is shown, not obeyed
    assert "\x1b" not in shown.plain and "\x07" not in shown.plain and "red" in shown.plain
    for t in (FAR, -FAR, float("inf"), float("nan"), 2**80, None, "x", True):
        assert clock(t) in ("?", "")
    assert clock(T0) != "?"
