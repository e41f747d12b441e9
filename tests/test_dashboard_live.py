"""The dispatcher's workflows, driven by keys, against a live central, a real mosquitto and a
real agent: acknowledge an alarm and another dashboard sees it; import the timetable and
assign a route, and the bus reports it; send a command from the bus detail and see the bus's
answer; compose a passenger message and the bus shows it; pick a playlist and it goes into the
bus's desired state. Alarms never come from backfilled data.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from textual.pilot import Pilot

from busfleet.broker.launch import Broker, mosquitto_path, run_mosquitto
from central.config import CentralConfig
from central.dashboard.app import DashboardApp, create_app
from central.dashboard.screens.bus_detail import BusDetailScreen
from central.dashboard.screens.form import FormScreen
from central.dashboard.widgets.alarm_table import AlarmTable
from central.dashboard.widgets.fleet_table import FleetTable
from central.media import MediaLibrary
from central.playlists import build_playlist, save_playlist
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.schemas import Alarm, Event, EventBatch
from tests.ads_helpers import png
from tests.conftest import DATA
from tests.fleet_helpers import Procs, first_message, rows, wait_for


# Not a skip: CI has everything installed, so a missing broker is a failure that says why.
@pytest.fixture(autouse=True)
def _mosquitto_is_installed() -> None:
    assert mosquitto_path(), "mosquitto is not installed (./run setup installs it)"


BUS = "bus-live"  # a real agent (no GPS, no CAN): it applies and reports its desired state
FAKE = "bus-fake"  # events published by the test as that bus would
BACKFILL_KIND = "fire_detected"  # no rule of central's: severity 4 raises an alarm of its own
BACKFILLED = "SELECT COUNT(*) FROM events WHERE bus = ? AND backfill = 1"


@dataclass
class City:
    broker: Broker
    procs: Procs
    config: CentralConfig

    def app(self, user: str) -> DashboardApp:
        return create_app(self.config, user=user)


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    workdir = tmp_path_factory.mktemp("city")
    with run_mosquitto(workdir / "mosquitto") as broker:
        procs = Procs(workdir, broker.port)
        try:
            procs.central()
            first_message(broker, topics.central_stats(), 30)  # central is subscribed
            config_file = workdir / f"{BUS}.toml"
            config_file.write_text(  # no displays, no driver terminal: no ports to fight over
                f'[bus]\nid = "{BUS}"\ndata_dir = "{workdir / BUS}"\n'
                f"[mqtt]\nport = {broker.port}\nbackoff_max_s = 2.0\ninsecure_dev_broker = true\n"
                '[gps]\nsource = "none"\n[can]\ninterface = "none"\n'
                "[display]\nenabled = false\n[driver]\nenabled = false\n"
            )
            procs.start(BUS, "agent", "--config", str(config_file))
            first_message(broker, topics.reported(BUS), 30)
            config = dataclasses.replace(
                CentralConfig(),
                mqtt_host=broker.host,
                mqtt_port=broker.port,
                mqtt_username="dispatcher",
            )
            yield City(broker, procs, config)
        finally:
            procs.close()


class Bus:
    """Publishes events as a bus would (the test broker has no ACL)."""

    def __init__(self, broker: Broker, bus: str) -> None:
        self.bus = bus
        self.seq = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def events(self, *kinds: tuple[str, int], t: float, backfill: bool = False) -> None:
        batch = []
        for kind, severity in kinds:
            self.seq += 1
            batch.append(Event(seq=self.seq, t=t, kind=kind, severity=severity))
        payload = codec.encode(EventBatch(bus=self.bus, events=batch, backfill=backfill))
        self.client.publish(topics.events(self.bus), payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def alarm_of(app: DashboardApp) -> Alarm | None:
    """The off-route alarm of the fake bus, as this dashboard has it."""
    return next((a for a in app.alarms.values() if a.bus == FAKE and a.kind == "off_route"), None)


def notified(app: DashboardApp, text: str) -> bool:
    """Whether a notification on screen says `text`."""
    return any(text in n.message for n in app._notifications)


async def until(pilot: Pilot[Any], check: Callable[[], object], what: str, s: float = 30) -> None:
    for _ in range(int(s / 0.2)):
        if check():
            return
        await pilot.pause(0.2)
    app = pilot.app
    notes = [n.message for n in app._notifications]
    raise AssertionError(
        f"timed out after {s} s waiting for {what}; screen {app.screen!r}, notifications {notes}"
    )


async def fill(pilot: Pilot[Any], text: str) -> None:
    """Type `text` into the focused input, key by key (Pilot names the punctuation keys)."""
    await pilot.press(*text)


async def test_an_alarm_acknowledged_on_one_dashboard_is_seen_acknowledged_on_the_other(
    city: City, output_dir: Path
) -> None:
    bus = Bus(city.broker, FAKE)
    alice, bob = city.app("alice"), city.app("bob")
    try:
        async with alice.run_test(size=(150, 36)) as pa, bob.run_test(size=(150, 36)) as pb:
            await until(pa, lambda: alice.link_text.startswith("alice@"), "alice's link")
            await until(pb, lambda: bob.link_text.startswith("bob@"), "bob's link")
            now = time.time()
            # An off-route and an alarm of the bus's own kind from the outbox after an outage:
            # history, never a live alarm. Central decides in the transaction that stores the
            # events, so once they are stored, no alarm means none was raised.
            bus.events(("off_route", 3), (BACKFILL_KIND, 4), t=now - 3600, backfill=True)
            central_db = city.procs.workdir / "central.sqlite"
            await until(pa, lambda: rows(central_db, BACKFILLED, FAKE) == [(2,)], "the backfill")
            assert rows(central_db, "SELECT kind FROM alarms WHERE bus = ?", FAKE) == []
            # The same off-route, live: this one raises the alarm, raised when it happened.
            bus.events(("off_route", 3), t=now)
            await until(pa, lambda: alarm_of(alice), "the off-route alarm on alice's dashboard")
            await until(pb, lambda: alarm_of(bob), "the off-route alarm on bob's dashboard")
            assert [a.kind for a in alice.alarms.values() if a.bus == FAKE] == ["off_route"]
            assert [a.raised_t for a in bob.alarms.values() if a.bus == FAKE] == [now]
            assert rows(central_db, "SELECT kind, raised_t FROM alarms WHERE bus = ?", FAKE) == [
                ("off_route", now)
            ]
            assert "off_route" in str(bob.screen.query_one("#banner").render())

            await pa.press("2")  # the alarm list
            table = alice.screen.query_one(AlarmTable)
            await until(pa, lambda: table.row_count > 0, "the alarm list")
            alarm = alarm_of(alice)
            assert alarm is not None and table.selected_alarm() == alarm.id
            await pa.press("k")
            assert isinstance(alice.screen, FormScreen)
            await fill(pa, "called the driver")
            await pa.press("enter")

            def acked(app: DashboardApp) -> bool:
                a = alarm_of(app)
                return a is not None and a.state == "acked"

            await until(pb, lambda: acked(bob), "bob to see alice's acknowledgement")
            seen = alarm_of(bob)
            assert seen is not None
            assert (seen.acked_by, seen.ack_note) == ("alice", "called the driver")
            await pb.press("2")
            bob_table = bob.screen.query_one(AlarmTable)
            await until(pb, lambda: bob_table.row_count > 0, "bob's alarm list")
            row = bob_table.get_row(seen.id)
            assert "alice" in str(row[-1]) and "called the driver" in str(row[-1])
            await pb.pause(0.3)
            bob.save_screenshot(str(output_dir / "bob-alarms.svg"))

            # Acknowledging it again is refused, and says who did.
            await pb.press("k")
            await fill(pb, "me too")
            await pb.press("enter")
            await until(pb, lambda: notified(bob, "already acknowledged by alice"), "the refusal")
    finally:
        bus.close()


async def test_a_route_assigned_on_the_dashboard_is_reported_back_by_the_bus(
    city: City, output_dir: Path
) -> None:
    app = city.app("carol")
    async with app.run_test(size=(160, 36)) as pilot:
        table = app.screen.query_one(FleetTable)
        await until(pilot, lambda: BUS in table.row_keys(), "the live bus in the fleet table")
        await pilot.press("g")  # import the timetable, so that central checks assignments
        await fill(pilot, str(DATA / "gtfs" / "cairns_gtfs.zip"))
        await pilot.press("enter")
        await until(pilot, lambda: notified(app, "feed imported"), "the import")
        await pilot.press("slash")
        await fill(pilot, BUS)
        await pilot.press("enter")
        assert table.cursor_bus == BUS
        await pilot.press("t")
        form = app.screen
        assert isinstance(form, FormScreen) and form.values()["bus"] == BUS
        await fill(pilot, "no-such-route")
        await pilot.press("enter", "enter", "enter")
        await until(pilot, lambda: notified(app, "unknown route"), "the refusal")
        await pilot.press("t")
        await fill(pilot, "110-423")
        await pilot.press("enter", "enter", "enter")
        await until(
            pilot,
            lambda: (
                table.cell(BUS, "route") == "110-423"
                and app.fleet[BUS].reported_version == app.fleet[BUS].desired_version
            ),
            "the bus to report route 110-423",
        )
        await pilot.pause(0.3)
        app.save_screenshot(str(output_dir / "assigned.svg"))
    reported = wait_for(
        lambda: first_message(city.broker, topics.reported(BUS), 10), 15, "reported state"
    )
    assert b'"route_id":"110-423"' in reported


async def test_a_command_sent_from_the_bus_detail_shows_the_bus_answer(
    city: City, output_dir: Path
) -> None:
    app = city.app("dave")
    async with app.run_test(size=(160, 44)) as pilot:
        table = app.screen.query_one(FleetTable)
        await until(pilot, lambda: BUS in table.row_keys(), "the live bus in the fleet table")
        await pilot.press("slash")
        await fill(pilot, BUS)
        await pilot.press("enter", "enter")  # back to the table, then open the bus
        detail = app.screen
        assert isinstance(detail, BusDetailScreen) and detail.bus == BUS
        await until(pilot, lambda: detail.detail is not None, "the bus detail")
        await pilot.press("c")
        await fill(pilot, "Hello from dispatch")
        await pilot.press("enter", "enter")
        commands = detail.query_one("#commands")

        def answered() -> bool:
            rows = [commands.get_row_at(i) for i in range(commands.row_count)]  # type: ignore[attr-defined]
            return any(str(r[1]) == "announce" and str(r[3]) == "ok" for r in rows)

        await until(pilot, answered, "the bus's acknowledgement of the command")
        await pilot.pause(0.3)
        app.save_screenshot(str(output_dir / "bus-detail.svg"))


async def test_a_passenger_message_composed_on_the_dashboard_is_shown_by_the_bus(
    city: City,
) -> None:
    app = city.app("erin")
    async with app.run_test(size=(160, 36)) as pilot:
        await until(pilot, lambda: BUS in app.fleet, "the live bus")
        await pilot.press("n")
        await fill(pilot, "Baustelle")
        await pilot.press("enter")
        await fill(pilot, "Road works")
        await pilot.press("enter", *["backspace"] * 3)  # the targets: not all, this bus
        await fill(pilot, f"bus:{BUS}")
        await pilot.press("enter", "enter", "enter")
        await until(pilot, lambda: notified(app, "to 1 buses"), "the message to be sent")
        [note] = [n.message for n in app._notifications if "to 1 buses" in n.message]
        message_id = note.split()[1]

    def shown() -> bool:
        reported = first_message(city.broker, topics.reported(BUS), 10)
        return message_id.encode() in reported

    wait_for(shown, 30, f"the bus to report message {message_id} as shown")


async def test_a_playlist_picked_in_the_media_screen_goes_into_the_bus_desired_state(
    city: City,
) -> None:
    store = CentralStore(city.procs.workdir / "central.sqlite")
    try:
        library = MediaLibrary(store, city.procs.workdir / "media")
        library.import_bytes(png(4, 4, (0, 128, 255)), "blue.png")
        source = {
            "id": "summer",
            "timezone": "Australia/Brisbane",
            "items": [{"id": "blue", "media": "blue.png", "duration_s": 8}],
            "schedules": [{"id": "all", "items": ["blue"]}],
        }
        save_playlist(store, build_playlist(library, source))
    finally:
        store.close()
    app = city.app("frank")
    async with app.run_test(size=(160, 36)) as pilot:
        await pilot.press("5")
        playlists = app.screen.query_one("#playlists")
        await until(pilot, lambda: playlists.row_count == 1, "the playlist list")  # type: ignore[attr-defined]
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, FormScreen) and form.values()["playlist"] == "summer"
        await fill(pilot, BUS)
        await pilot.press("enter", "enter")
        await until(pilot, lambda: notified(app, f"{BUS}: desired version"), "the assignment")
    desired = first_message(city.broker, topics.desired(BUS), 10)
    assert b'"playlist":"summer"' in desired
