"""Timetables on the dashboard (issue 14), against a real mosquitto and a real central with two
imported timetable versions: the fleet table's TT column and the bus detail show what buses
report; publishing from the Timetables screen puts the version into a bus's desired document;
a bus still on the older version ten minutes after valid-from raises an out-of-date alarm.

The buses here are published by the test as buses would (their reported state is all that
counts); the agent's own timetable switching is tested in tests/test_timetable_onboard.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from textual.widgets import DataTable, Static

from busfleet.broker.launch import Broker, mosquitto_path, run_mosquitto
from central.config import CentralConfig
from central.dashboard.app import DashboardApp, create_app
from central.dashboard.messages import BusAction
from central.dashboard.screens.bus_detail import BusDetailScreen
from central.dashboard.screens.form import FormScreen
from central.dashboard.screens.timetables import TimetablesScreen
from central.dashboard.widgets.fleet_columns import COLUMNS, layout
from central.dashboard.widgets.fleet_table import FleetTable
from central.gtfs_import import import_gtfs
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.schemas import DesiredState, Presence, ReportedState, TimetableState
from tests.fleet_helpers import Procs, first_message
from tests.test_dashboard_live import fill, notified, until
from tests.timetable_helpers import gtfs_files

URL = "http://127.0.0.1:9/timetables"  # where buses would fetch packages (none does here)
REFUSAL = "sha256 mismatch [b]not markup[/b]"  # a bus's words, shown as they are


@pytest.fixture(autouse=True)
def _mosquitto_is_installed() -> None:
    assert mosquitto_path(), "mosquitto is not installed (./run setup installs it)"


@dataclass
class City:
    broker: Broker
    config: CentralConfig
    buses: paho.Client

    def app(self, user: str) -> DashboardApp:
        return create_app(self.config, user=user)

    def report(self, bus: str, tt: TimetableState) -> None:
        """The bus comes online and reports which timetable it runs (as an agent would)."""
        birth = Presence(bus=bus, online=True, session=1, t=time.time())
        self.buses.publish(topics.presence(bus), codec.encode(birth), qos=1, retain=True)
        state = ReportedState(bus=bus, version=0, t=time.time(), timetable=tt)
        info = self.buses.publish(topics.reported(bus), codec.encode(state), qos=1, retain=True)
        info.wait_for_publish(10)


def _feed(folder: Path, **kw: Any) -> Path:
    folder.mkdir()
    for name, text in gtfs_files(**kw).items():
        (folder / name).write_text(text)
    (folder / "calendar.txt").write_text(  # central's import wants one; the bus's does not
        "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
        "ALL,1,1,1,1,1,1,1,20200101,20991231\n"
    )
    return folder


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    workdir = tmp_path_factory.mktemp("tt-city")
    db = workdir / "central.sqlite"
    store = CentralStore(db)  # two versions, imported before central runs: v2 renames a stop
    import_gtfs(store, _feed(workdir / "v1"))
    import_gtfs(store, _feed(workdir / "v2", last_stop="Town Hall"))
    store.close()
    config_file = workdir / "central.toml"
    config_file.write_text(f'[central]\ntimetable_url = "{URL}"\n')
    with run_mosquitto(workdir / "mosquitto") as broker:
        procs = Procs(workdir, broker.port)
        buses = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        try:
            procs.start(
                "central", "central", "serve", "--config", str(config_file), "--db", str(db),
                "--mqtt-port", str(broker.port),
            )  # fmt: skip
            first_message(broker, topics.central_stats(), 30)  # central is subscribed
            buses.connect(broker.host, broker.port)
            buses.loop_start()
            config = dataclasses.replace(
                CentralConfig(),
                mqtt_host=broker.host,
                mqtt_port=broker.port,
                mqtt_username="dispatcher",
            )
            yield City(broker, config, buses)
        finally:
            buses.loop_stop()
            buses.disconnect()
            procs.close()


def shown(widget: Static) -> str:
    return str(widget.render())


async def test_the_fleet_table_shows_each_bus_timetable_and_the_detail_says_what_it_refused(
    city: City,
) -> None:
    city.report("tt-staged", TimetableState(running=1, staged=2, source="central", error=REFUSAL))
    city.report("tt-local", TimetableState(source="local"))
    city.report("tt-none", TimetableState())
    app = city.app("gina")
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.screen.query_one(FleetTable)
        await until(
            pilot,
            lambda: {"tt-staged", "tt-local", "tt-none"} <= set(table.row_keys()),
            "the buses in the fleet table",
        )
        await until(
            pilot,
            lambda: table.cell("tt-staged", "timetable") == "v1→2!",
            "the staged bus's timetable, marked refused",
        )
        assert table.cell("tt-local", "timetable") == "local"
        assert table.cell("tt-none", "timetable") == "—"
        # On an 80-column terminal the bus, its timetable, route and trip are all in view.
        keys = [COLUMNS[i].key for i, _, _ in layout(80, {"bus": 9, "alarm": 0})]
        assert {"bus", "timetable", "route", "trip"} <= set(keys)
        app.post_message(BusAction("tt-staged", "open"))
        await until(pilot, lambda: isinstance(app.screen, BusDetailScreen), "the bus detail")
        box = app.screen.query_one("#timetable", Static)
        await until(pilot, lambda: "staged   v2" in shown(box), "the detail's timetable box")
        text = shown(box)
        assert "runs     v1 (from central)" in text
        assert "desired  none published" in text
        assert f"refused  {REFUSAL}" in text  # literal: the bus's brackets are no markup


async def test_a_version_published_from_the_timetables_screen_reaches_the_bus_and_a_bus_late_on_it_raises_an_alarm(  # noqa: E501
    city: City, output_dir: Path
) -> None:
    city.report("tt-late", TimetableState(running=1, source="central"))
    app = city.app("hugo")
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: "tt-late" in app.fleet, "the bus")
        await pilot.press("6")
        screen = app.screen
        assert isinstance(screen, TimetablesScreen)
        versions = screen.query_one("#versions", DataTable)
        await until(pilot, lambda: versions.row_count == 2, "the two versions")
        diff = screen.query_one("#diff", Static)
        await until(pilot, lambda: "changed against v1" in shown(diff), "what v2 changed")
        assert "S3" in shown(diff)  # the renamed stop
        assert screen.selected_version() == 2  # the newest first: the one to publish

        # A group central does not know: refused, and the dispatcher reads why.
        await pilot.press("p")
        form = app.screen
        assert isinstance(form, FormScreen) and form.values() == {"valid_from": "", "to": "all"}
        await pilot.press("enter", *["backspace"] * 3)
        await fill(pilot, "group:nowhere")
        await pilot.press("enter")
        await until(pilot, lambda: notified(app, "no group 'nowhere'"), "the refusal")

        # Valid from twenty minutes ago, to the one bus: it is late at once.
        since = dt.datetime.fromtimestamp(time.time() - 1200).replace(second=0, microsecond=0)
        await pilot.press("p")
        await fill(pilot, since.strftime("%Y-%m-%dT%H:%M"))
        await pilot.press("enter", *["backspace"] * 3)
        await fill(pilot, "bus:tt-late")
        await pilot.press("enter")
        await until(pilot, lambda: notified(app, "timetable v2 to 1 buses"), "the publication")

        def desired() -> DesiredState:
            return codec.decode(
                DesiredState, first_message(city.broker, topics.desired("tt-late"), 10)
            )

        doc = desired()
        assert doc.timetable is not None
        assert (doc.timetable.version, doc.timetable.valid_from) == (2, since.timestamp())
        assert doc.timetable.url.startswith(URL + "/")

        def late_alarm() -> bool:
            return any(
                a.bus == "tt-late" and a.kind == "timetable_out_of_date" and a.state == "active"
                for a in app.alarms.values()
            )

        await until(pilot, late_alarm, "the out-of-date alarm")
        [alarm] = [a for a in app.alarms.values() if a.kind == "timetable_out_of_date"]
        assert alarm.text.startswith("runs v1, should run v2 since")
        assert app.fleet["tt-late"].timetable_desired == 2
        await pilot.pause(0.3)
        app.save_screenshot(str(output_dir / "timetables.svg"))

        # The bus switches: the alarm is over.
        city.report("tt-late", TimetableState(running=2, source="central"))
        await until(
            pilot,
            lambda: app.alarms[alarm.id].state in ("cleared", "closed"),
            "the alarm to clear",
        )
