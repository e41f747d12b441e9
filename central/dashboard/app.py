"""The dispatcher dashboard (Textual): the fleet, alarms, a map, reports; act in a few keys.

Several dashboards may run at once. Each follows central's retained state over MQTT (fleet
entries, alarms) and asks central for everything else with dispatch requests (central/
dispatch.py): acknowledging an alarm, assigning a bus, a passenger message, a command, a bus's
detail, reports. A dashboard needs no database and never writes a bus topic, and each sees the
others' actions because central publishes their outcome to all (the acknowledged alarm, the
bus's new desired and reported state).

Attributes down, messages up: the app owns the state and every decision. Screens, widgets and
the command palette read the state through the read-only view it provides (view.py) and post
what the dispatcher asked for (messages.py: `BusAction`, `AckAlarm`, ...); the `on_...`
handlers below decide what follows. Nothing under screens/ or widgets/ imports this module.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import aiomqtt
import msgspec
from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.reactive import reactive

from central.config import CentralConfig
from central.dashboard.announce import DONE as ANNOUNCED
from central.dashboard.announce import announce_form, announce_request
from central.dashboard.commands import DispatchCommands
from central.dashboard.link import Link, NotConnected
from central.dashboard.messages import (
    AckAlarm,
    AssignPlaylist,
    BusAction,
    BusActionName,
    EditPlaylist,
    FleetUpdated,
    LinkStatus,
    PublishVersion,
    ReplyReceived,
)
from central.dashboard.screens.alarms import AlarmsScreen
from central.dashboard.screens.audit import AuditScreen
from central.dashboard.screens.bus_detail import BusDetailScreen
from central.dashboard.screens.bus_log import BusLogScreen
from central.dashboard.screens.fleet import FleetScreen
from central.dashboard.screens.form import Field, FormScreen
from central.dashboard.screens.help import HelpScreen
from central.dashboard.screens.map import MapScreen
from central.dashboard.screens.media import MediaScreen
from central.dashboard.screens.operator_reports import OperatorReportsScreen
from central.dashboard.screens.releases import ReleasesScreen
from central.dashboard.screens.reports import ReportsScreen
from central.dashboard.screens.timetables import (
    TimetablesScreen,
    publish_form,
    publish_request,
    published_text,
)
from central.dashboard.state import UNACKED, apply, apply_alarms, per_bus
from central.dashboard.text import clean
from central.dashboard.view import DashboardView, Query, Shapes, Stops
from central.dashboard.widgets.alarm_table import AlarmTable
from central.dashboard.widgets.braille_map import BrailleMap
from central.dashboard.widgets.fleet_table import FleetTable
from protocols.requests import (
    COMMAND_NAMES,
    Assign,
    BusCommand,
    DispatchReply,
    DispatchRequest,
    ImportGtfs,
    Listing,
    Logs,
    Request,
    Resend,
    SavePlaylist,
    SendCommand,
    SendMessage,
)
from protocols.requests import AckAlarm as AckAlarmRequest
from protocols.requests import AssignPlaylist as AssignPlaylistRequest
from protocols.schemas import Alarm, CentralStats, FleetEntry, Scalar

REQUEST_TIMEOUT_S = 15.0  # a GTFS import takes a few seconds; beyond this, say so

Handler = Callable[[DispatchRequest], Awaitable[DispatchReply]]


class DashboardApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "busfleet — dispatch"
    MODES: ClassVar[dict[str, Any]] = {
        "fleet": FleetScreen,
        "alarms": AlarmsScreen,
        "map": MapScreen,
        "reports": ReportsScreen,
        "media": MediaScreen,
        "timetables": TimetablesScreen,
        "releases": ReleasesScreen,
        "audit": AuditScreen,  # issue 18: who asked what
        "operator_reports": OperatorReportsScreen,  # issue 18: and the route replay
    }
    DEFAULT_MODE = "fleet"
    COMMANDS = App.COMMANDS | {DispatchCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "switch_mode('fleet')", "Fleet"),
        Binding("2,a", "switch_mode('alarms')", "Alarms"),
        Binding("3", "switch_mode('map')", "Map"),
        Binding("4", "switch_mode('reports')", "Reports"),
        Binding("5", "switch_mode('media')", "Media"),
        Binding("6", "switch_mode('timetables')", "Timetables"),
        Binding("7", "switch_mode('releases')", "Releases"),
        Binding("8", "switch_mode('audit')", "Audit"),
        Binding("9", "switch_mode('operator_reports')", "Operator reports"),
        Binding("n", "new_message", "Message"),
        Binding("v", "live_announce", "Announce"),  # issue 17: spoken and shown on the buses
        Binding("g", "import_gtfs", "Import GTFS", show=False),
        Binding("question_mark,f1", "help", "Help"),
        Binding("ctrl+p", "command_palette", "Palette", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False),
    ]

    fleet_version: reactive[int] = reactive(0, init=False)
    alarm_version: reactive[int] = reactive(0, init=False)

    def __init__(
        self,
        config: CentralConfig,
        *,
        user: str = "dispatcher",
        connect: bool = True,
        clock: Callable[[], float] = time.time,
        handler: Handler | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.user = user
        self.connect = connect
        self.clock = clock
        self.handler = handler  # without a broker: answers requests (tests, snapshots)
        self.link = Link(config, user, self.post_message)
        self.fleet: dict[str, FleetEntry] = {}
        self.alarms: dict[str, Alarm] = {}
        self.bus_alarms = per_bus({})
        self.stats: CentralStats | None = None
        self.stop_names: dict[str, str] = {}
        self.routes: list[str] = []
        self.playlists: list[str] = []
        self.link_text = "not connected"
        self.updates = 0  # fleet updates applied (tests watch it)
        self._pending: dict[str, asyncio.Future[DispatchReply]] = {}
        self._geometry: tuple[Shapes, Stops] | None = None
        self.shape_routes: list[str] = []  # the route of each of geometry()'s shapes
        self._connected_at: float | None = None

    def notify(  # the same call as Textual's, but never markup
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast; its text is literal (it names buses, alarms and central's refusals)."""
        super().notify(
            clean(message), title=clean(title), severity=severity, timeout=timeout, markup=False
        )

    # -- state ------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.sub_title = f"{self.user} · connecting…" if self.connect else f"{self.user} · offline"
        if self.connect:
            self.run_worker(self.link.run(), name="mqtt", exclusive=True, group="mqtt")
        elif self.handler is not None:  # no broker: stop names and routes from the handler
            self._load_names()

    def on_fleet_updated(self, message: FleetUpdated) -> None:
        self.apply_update(message.entries, message.stats, message.alarms)

    def apply_update(
        self,
        entries: list[FleetEntry],
        stats: CentralStats | None = None,
        alarms: dict[str, Alarm | None] | None = None,
    ) -> None:
        """Take in what central published; screens redraw through the version counters."""
        if entries:
            self.fleet = apply(self.fleet, entries)
        if stats is not None:
            self.stats = stats
        self.updates += 1
        if alarms:
            self._announce(alarms)
            self.alarms = apply_alarms(self.alarms, alarms)
            self.bus_alarms = per_bus(self.alarms)
            self.alarm_version += 1
        self.fleet_version += 1

    def _announce(self, changes: dict[str, Alarm | None]) -> None:
        """New alarms are impossible to miss: a toast that stays, and the terminal's bell."""
        since = self._connected_at or 0.0
        for alarm_id, a in changes.items():
            if a is None or alarm_id in self.alarms or a.state not in UNACKED:
                continue
            if a.t < since - 5:  # retained on connect: the banner shows them, no fanfare
                continue
            severity: SeverityLevel = "error" if a.severity >= 3 else "warning"
            title = {4: "EMERGENCY", 3: "Alarm"}.get(a.severity, "Warning")
            self.notify(
                f"{a.bus}: {a.kind} {a.text}",
                title=title,
                severity=severity,
                timeout=30 if a.severity >= 3 else 10,
            )
            self.bell()

    def on_link_status(self, message: LinkStatus) -> None:
        self.link_text = message.text
        self.sub_title = message.text
        if message.connected:
            self._connected_at = self.clock()
            self._load_names()

    def on_reply_received(self, message: ReplyReceived) -> None:
        future = self._pending.get(message.reply.id)
        if future is not None and not future.done():
            future.set_result(message.reply)

    @work(group="names", exclusive=True, exit_on_error=False)
    async def _load_names(self) -> None:
        stops = await self.request(Listing(what="stops"))
        self.stop_names = {str(s["stop_id"]): str(s["name"]) for s in stops.tables.get("stops", [])}
        routes = await self.request(Listing(what="routes"))
        self.routes = [str(r["route_id"]) for r in routes.tables.get("routes", [])]
        playlists = await self.request(Listing(what="playlists"))
        self.playlists = [str(p["id"]) for p in playlists.tables.get("playlists", [])]
        self.fleet_version += 1

    async def geometry(self) -> tuple[Shapes, Stops]:
        """Route shapes and stops for the map, asked for once."""
        if self._geometry is None:
            reply = await self.request(Listing(what="shapes"))
            rows = [s for s in reply.tables.get("shapes", []) if s.get("points")]
            shapes = [
                [(float(a), float(b)) for a, _, b in (p.partition(",") for p in points.split(";"))]
                for points in (str(s["points"]) for s in rows)
            ]
            self.shape_routes = [str(s.get("route") or "") for s in rows]
            stops_reply = await self.request(Listing(what="stops"))
            stops: Stops = [
                (str(s["stop_id"]), str(s["name"]), float(str(s["lat"])), float(str(s["lon"])))
                for s in stops_reply.tables.get("stops", [])
            ]
            if not reply.ok:
                return [], []
            self._geometry = (shapes, stops)
        return self._geometry

    # -- requests to central ----------------------------------------------------------------
    async def request(self, ask: Request) -> DispatchReply:
        """Ask central; the reply, or a refusal saying why there was none."""
        now = self.clock()
        request = DispatchRequest(id=uuid.uuid4().hex[:12], t=now, request=ask)
        if self.handler is not None:
            return await self.handler(request)
        future: asyncio.Future[DispatchReply] = asyncio.get_running_loop().create_future()
        self._pending[request.id] = future
        try:
            await self.link.request(request)
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await future
        except (NotConnected, aiomqtt.MqttError) as exc:
            return DispatchReply(id=request.id, ok=False, t=now, error=str(exc))
        except TimeoutError:
            error = f"central did not answer in {REQUEST_TIMEOUT_S:.0f} s"
            return DispatchReply(id=request.id, ok=False, t=now, error=error)
        finally:
            self._pending.pop(request.id, None)

    async def ask(self, query: Query) -> DispatchReply:
        """What screens may ask central (view.py): to look, never to change anything."""
        return await self.request(query)

    async def act(self, ask: Request, done: str) -> DispatchReply:
        """A request whose outcome the dispatcher is told about."""
        reply = await self.request(ask)
        action = str(ask.__struct_config__.tag)
        if reply.ok:
            try:
                text = done.format(**reply.result)
            except (KeyError, IndexError, ValueError):  # a central that answers differently
                text = f"{action}: done"
            self.notify(text, title=action)
        else:
            self.notify(reply.error, title=f"{action} refused", severity="error", timeout=15)
        return reply

    def _then(self, run: Callable[[dict[str, str]], Awaitable[object] | None]) -> Any:
        def done(values: dict[str, str] | None) -> None:
            if values is not None:
                result = run(values)
                if result is not None:
                    self.run_worker(result, group="act")

        return done

    # -- what screens, widgets and the palette ask for (messages up) ------------------------
    def on_bus_action(self, message: BusAction) -> None:
        workflows: dict[BusActionName, Callable[[str | None], None]] = {
            "open": self.open_bus,
            "map": self.show_on_map,
            "assign": self.assign,
            "playlist": self.choose_playlist,
            "command": self.command,
            "ack": self.ack_bus,
            "logs": self.show_logs,
        }
        workflows[message.action](message.bus)

    def on_ack_alarm(self, message: AckAlarm) -> None:
        self.ack(message.alarm_id)

    def on_assign_playlist(self, message: AssignPlaylist) -> None:
        self.choose_playlist(None, playlist=message.playlist)

    def on_edit_playlist(self, message: EditPlaylist) -> None:
        self.edit_playlist(message.playlist, message.media, message.seconds, message.media_names)

    def on_publish_version(self, message: PublishVersion) -> None:
        def publish(values: dict[str, str]) -> Awaitable[DispatchReply] | None:
            try:
                request = publish_request(message.version, values, self.clock())
            except ValueError as exc:
                self.notify(str(exc), title="publish_timetable refused", severity="error")
                return None
            return self.act(request, published_text(request))

        form = publish_form(message.version, sorted(self.fleet), message.groups)
        self.push_screen(form, self._then(publish))

    # -- workflows --------------------------------------------------------------------------
    def open_bus(self, bus: str | None) -> None:
        if bus:
            self.push_screen(BusDetailScreen(bus))

    def show_logs(self, bus: str | None) -> None:
        """Send the bus a `logs` command (its last hour) and show its answer when it comes."""
        if not bus:
            return
        screen = BusLogScreen(bus)
        self.push_screen(screen)

        async def ask() -> None:
            request = SendCommand(bus=bus, command=Logs(since_s=3600.0), ttl_s=300.0)
            screen.asked(await self.act(request, "{bus}: log asked for (command {id})"))

        self.run_worker(ask(), group="logs")

    def show_on_map(self, bus: str | None) -> None:
        async def show() -> None:
            await self.switch_mode("map")
            screen = self.screen
            if isinstance(screen, MapScreen):
                screen.focus_bus(bus)

        self.run_worker(show(), group="map")

    def ack(self, alarm_id: str) -> None:
        a = self.alarms.get(alarm_id)
        if a is None:
            return
        what = f"{a.bus}: {a.kind} {a.subject} {a.text}".strip()
        form = FormScreen(
            f"Acknowledge alarm ({a.state})",
            [Field("note", "Note (what you did)", placeholder="e.g. called the driver")],
            note=what,
        )
        self.push_screen(
            form,
            self._then(
                lambda v: self.act(
                    AckAlarmRequest(alarm=alarm_id, note=v["note"]), "alarm {alarm} {state}"
                )
            ),
        )

    def ack_bus(self, bus: str | None) -> None:
        todo = [a for a in self.alarms.values() if a.bus == bus and a.state in UNACKED]
        if not todo:
            self.notify(f"no alarm to acknowledge on {bus}", timeout=3)
            return
        self.ack(max(todo, key=lambda a: (a.severity, a.raised_t)).id)

    def assign(self, bus: str | None) -> None:
        if not self.routes and self.connect:
            self._load_names()
        fields = [
            Field("bus", "Bus", bus or "", suggestions=sorted(self.fleet)),
            Field("route", "Route", placeholder="GTFS route_id", suggestions=self.routes),
            Field("trip", "Trip (optional)", placeholder="GTFS trip_id"),
            Field("block", "Block (optional)", placeholder="GTFS block_id"),
        ]
        self.push_screen(
            FormScreen("Assign a bus to a route, trip or block", fields),
            self._then(
                lambda v: self.act(
                    Assign(bus=v["bus"], route=v["route"], trip=v["trip"], block=v["block"]),
                    "{bus}: desired version {version}",
                )
            ),
        )

    def choose_playlist(self, bus: str | None, playlist: str | None = None) -> None:
        fields = [
            Field("bus", "Bus", bus or "", suggestions=sorted(self.fleet)),
            Field(
                "playlist", "Playlist (empty: no ads)", playlist or "", suggestions=self.playlists
            ),
        ]
        self.push_screen(
            FormScreen("Assign a playlist", fields),
            self._then(
                lambda v: self.act(
                    AssignPlaylistRequest(bus=v["bus"], playlist=v["playlist"]),
                    "{bus}: desired version {version}",
                )
            ),
        )

    def edit_playlist(
        self, playlist: str, media: str, seconds: Scalar, media_names: list[str]
    ) -> None:
        fields = [
            Field("id", "Playlist id", playlist, placeholder="e.g. summer-sale"),
            Field(
                "media",
                "Media in play order (names, comma-separated)",
                media,
                suggestions=media_names,
            ),
            Field("seconds", "Seconds on screen, each", str(seconds or 10)),
        ]
        note = "One item per media, all day every day; saving makes a new revision."
        self.push_screen(
            FormScreen("Playlist", fields, note=note),
            self._then(self._save_playlist),
        )

    def _save_playlist(self, v: dict[str, str]) -> Awaitable[DispatchReply] | None:
        try:
            seconds = float(v["seconds"] or 10)
        except ValueError:
            self.notify("seconds is a number", severity="error")
            return None
        media = [m.strip() for m in v["media"].split(",") if m.strip()]
        return self.act(
            SavePlaylist(id=v["id"], media=media, seconds=seconds),
            "playlist {id} revision {revision} saved",
        )

    def command(self, bus: str | None) -> None:
        fields = [
            Field("bus", "Bus", bus or "", suggestions=sorted(self.fleet)),
            Field(
                "name",
                f"Command ({', '.join(COMMAND_NAMES)})",
                "announce",
                suggestions=COMMAND_NAMES,
            ),
            Field("text", "Text (announce, driver_message) or since (resend, unix s)"),
            Field("ttl_s", "Expires after (s)", "300"),
        ]
        self.push_screen(FormScreen("Send a command", fields), self._then(self._send_command))

    def _send_command(self, v: dict[str, str]) -> Awaitable[DispatchReply] | None:
        name = v["name"].strip()
        command: BusCommand
        try:
            ttl_s = float(v["ttl_s"] or 300)
            if name == "resend":
                command = Resend(since=float(v["text"]) if v["text"] else self.clock() - 3600)
            else:
                command = msgspec.convert({"name": name, "text": v["text"]}, BusCommand)
        except ValueError:
            self.notify("expiry and since are numbers", severity="error")
            return None
        except msgspec.ValidationError as exc:
            self.notify(f"{name}: {exc}", title="command refused", severity="error")
            return None
        return self.act(
            SendCommand(bus=v["bus"], command=command, ttl_s=ttl_s), "{bus}: command {id} sent"
        )

    def action_new_message(self, targets: str = "all") -> None:
        fields = [
            Field("text_de", "German text (required)"),
            Field("text_en", "English text"),
            Field("targets", "Targets: all, route:R, bus:B (comma-separated)", targets),
            Field("priority", "Priority 0 (normal) .. 9 (urgent)", "0"),
            Field("minutes", "Valid for (minutes)", "60"),
        ]
        self.push_screen(FormScreen("Passenger message", fields), self._then(self._send_message))

    def _send_message(self, v: dict[str, str]) -> Awaitable[DispatchReply] | None:
        try:
            priority, minutes = int(v["priority"] or 0), float(v["minutes"] or 60)
        except ValueError:
            self.notify("priority and minutes are numbers", severity="error")
            return None
        return self.act(
            SendMessage(
                text_de=v["text_de"],
                text_en=v["text_en"],
                targets=[v["targets"]],
                priority=priority,
                valid_to=self.clock() + minutes * 60,
            ),
            "message {id} to {buses} buses",
        )

    def action_live_announce(self, targets: str = "all") -> None:
        self.push_screen(announce_form(self.fleet, targets), self._then(self._live_announce))

    def _live_announce(self, v: dict[str, str]) -> Awaitable[DispatchReply] | None:
        request = announce_request(v)
        if isinstance(request, str):
            self.notify(request, title="announce refused", severity="error")
            return None
        return self.act(request, ANNOUNCED)

    def action_import_gtfs(self) -> None:
        fields = [Field("path", "GTFS zip or folder on this machine (uploaded to central)")]
        self.push_screen(
            FormScreen("Import a GTFS feed (replaces the current timetable)", fields),
            self._then(self._import_gtfs),
        )

    async def _import_gtfs(self, v: dict[str, str]) -> DispatchReply | None:
        from pathlib import Path

        from central.client import UploadFailed, upload, zipped
        from central.operator_files import NotAFile

        try:  # central reads no path a dispatcher names: the feed is sent
            with zipped(v["path"]) as archive:
                upload_id = await upload(self.request, archive)
        except (NotAFile, UploadFailed) as exc:
            self.notify(str(exc), title="import_gtfs refused", severity="error", timeout=15)
            return None
        name = Path(v["path"]).name[:200]
        return await self.act(ImportGtfs(upload=upload_id, name=name), "feed imported")

    def action_help(self) -> None:
        self.push_screen(HelpScreen(KEY_SCOPES))


KEY_SCOPES: list[tuple[str, type]] = [
    ("everywhere", DashboardApp),
    ("fleet", FleetScreen),
    ("fleet table", FleetTable),
    ("alarms", AlarmsScreen),
    ("alarm list", AlarmTable),
    ("bus detail", BusDetailScreen),
    ("bus log", BusLogScreen),
    ("map", MapScreen),
    ("map canvas", BrailleMap),
    ("reports", ReportsScreen),
    ("media", MediaScreen),
    ("timetables", TimetablesScreen),
    ("releases", ReleasesScreen),
    ("dialogs", FormScreen),
    ("help", HelpScreen),
]


if TYPE_CHECKING:

    def _is_the_screens_view(app: DashboardApp) -> DashboardView:
        return app  # mypy checks here that the app provides all that the screens read


def create_app(
    config: CentralConfig, *, user: str = "dispatcher", connect: bool = True, **kw: Any
) -> DashboardApp:
    """App factory: the dashboard for the broker and identity in `config`, as `user`."""
    return DashboardApp(config, user=user, connect=connect, **kw)
