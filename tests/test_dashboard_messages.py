"""Attributes down, messages up: the dashboard's screens read a view and post messages; the app
alone decides. No screen, widget or the command palette imports the app.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.reactive import reactive

from central.config import CentralConfig
from central.dashboard.app import DashboardApp
from central.dashboard.messages import AckAlarm, BusAction
from central.dashboard.screens.alarms import AlarmsScreen
from central.dashboard.screens.form import FormScreen
from central.dashboard.state import BusAlarms, per_bus
from central.dashboard.view import Query, Shapes, Stops
from protocols.requests import DispatchReply, DispatchRequest
from protocols.schemas import Alarm, CentralStats, FleetEntry

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "central" / "dashboard"
APP = "central.dashboard.app"
T0 = 1_800_000_000.0
SIZE = (150, 40)


def imports_of(path: Path, package: str) -> set[str]:
    """Every module `path` imports, relative imports resolved, TYPE_CHECKING ones included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def app_importers(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
        if APP in imports_of(path, package):
            out.append(str(path.relative_to(REPO)))
    return out


def test_no_screen_widget_or_the_palette_imports_the_app() -> None:
    paths = [*(DASHBOARD / "screens").rglob("*.py"), *(DASHBOARD / "widgets").rglob("*.py")]
    paths += [DASHBOARD / "commands.py", DASHBOARD / "view.py", DASHBOARD / "messages.py"]
    assert len(paths) > 12
    assert app_importers(paths) == []


def test_the_app_import_checker_finds_one_hidden_under_type_checking(tmp_path: Path) -> None:
    screens = tmp_path / "central" / "dashboard" / "screens"
    screens.mkdir(parents=True)
    (screens / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from central.dashboard.app import DashboardApp\n"
    )
    (screens / "b.py").write_text("from .. import app\n")
    (screens / "c.py").write_text("from ..app import DashboardApp\n")
    (screens / "d.py").write_text("from central.dashboard.state import View\n")
    found = []
    for path in sorted(screens.glob("*.py")):
        package = ".".join(path.relative_to(tmp_path).with_suffix("").parts[:-1])
        if APP in imports_of(path, package):
            found.append(path.name)
    assert found == ["a.py", "b.py", "c.py"]


def entry(i: int) -> FleetEntry:
    return FleetEntry(bus=f"bus-{i:02d}", online=True, last_seen=T0, t=T0, route_id="110-423")


async def answered(request: DispatchRequest) -> DispatchReply:
    return DispatchReply(id=request.id, ok=True, t=T0)


class Seeing(DashboardApp):
    """The dashboard, noting each bus action that reaches it."""

    def __init__(self) -> None:
        super().__init__(
            CentralConfig(), user="eve", connect=False, clock=lambda: T0, handler=answered
        )
        self.seen: list[tuple[str | None, str]] = []

    def on_bus_action(self, message: BusAction) -> None:
        # Textual runs the handlers along the MRO: the dashboard's own comes after this one.
        self.seen.append((message.bus, message.action))


async def test_a_key_on_a_screen_reaches_the_app_as_a_message_and_the_app_opens_the_form() -> None:
    app = Seeing()
    async with app.run_test(size=SIZE) as pilot:
        app.apply_update([entry(1), entry(2)], CentralStats(t=T0, counters={}), {})
        await pilot.pause(0.1)
        await pilot.press("down", "t")  # assign the bus under the cursor
        await pilot.pause(0.1)
        assert app.seen == [("bus-02", "assign")]
        form = app.screen
        assert isinstance(form, FormScreen)
        assert form.values()["bus"] == "bus-02"


class Deaf(DashboardApp):
    """An app that takes a screen's bus actions in and does nothing with them."""

    def __init__(self) -> None:
        super().__init__(CentralConfig(), user="eve", connect=False, clock=lambda: T0)
        self.refused: list[str] = []

    def on_bus_action(self, message: BusAction) -> None:
        message.prevent_default()  # not the app's decision: ours, and it is no
        self.refused.append(message.action)


async def test_the_screen_only_asks_the_app_decides() -> None:
    app = Deaf()
    async with app.run_test(size=SIZE) as pilot:
        app.apply_update([entry(1)], None, {})
        await pilot.pause(0.1)
        await pilot.press("t", "enter", "c", "m")
        for _ in range(50):  # until the app has had every request (not a fixed wait)
            if len(app.refused) == 4:
                break
            await pilot.pause(0.1)
        await pilot.pause()  # and whatever they would have started has run
        assert app.refused == ["assign", "open", "command", "map"]
        assert app.screen.__class__.__name__ == "FleetScreen"  # no form, no map, no bus opened


class Host(App[None]):
    """Not the dashboard: any app that offers the view (view.py) can show a dispatch screen."""

    fleet_version: reactive[int] = reactive(0, init=False)
    alarm_version: reactive[int] = reactive(0, init=False)
    MODES: ClassVar[dict[str, Any]] = {"alarms": AlarmsScreen}
    DEFAULT_MODE = "alarms"

    def __init__(self, alarms: dict[str, Alarm]) -> None:
        super().__init__()
        self.fleet: dict[str, FleetEntry] = {}
        self.alarms = alarms
        self.bus_alarms: dict[str, BusAlarms] = per_bus(alarms)
        self.stats: CentralStats | None = None
        self.stop_names: dict[str, str] = {}
        self.link_text = "host"
        self.clock = lambda: T0
        self.acked: list[str] = []

    async def ask(self, query: Query) -> DispatchReply:
        return DispatchReply(id="x", ok=False, t=T0, error="no central here")

    async def geometry(self) -> tuple[Shapes, Stops]:
        return [], []

    def on_ack_alarm(self, message: AckAlarm) -> None:
        self.acked.append(message.alarm_id)


async def test_the_alarm_screen_posts_the_alarm_to_acknowledge_to_whatever_app_hosts_it() -> None:
    alarm = Alarm(
        id="a1", bus="bus-03", kind="emergency", severity=4, state="active", raised_t=T0, t=T0
    )
    host = Host({"a1": alarm})
    async with host.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        assert "1 to acknowledge" in str(host.screen.query_one("#banner").render())
        await pilot.press("k")
        await pilot.pause(0.1)
        assert host.acked == ["a1"]


async def test_the_palette_acknowledges_by_message_and_runs_the_apps_own_actions_by_name() -> None:
    app = Seeing()
    alarm = Alarm(
        id="a1", bus="bus-01", kind="emergency", severity=4, state="active", raised_t=T0, t=T0
    )
    async with app.run_test(size=SIZE) as pilot:
        app.apply_update([entry(1)], None, {"a1": alarm})
        await pilot.press("ctrl+p", *"acknowledge emergency")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        form = app.screen
        assert isinstance(form, FormScreen) and form.title_text.startswith("Acknowledge alarm")
        await pilot.press("escape", "ctrl+p", *"help every key")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.screen.__class__.__name__ == "HelpScreen"
