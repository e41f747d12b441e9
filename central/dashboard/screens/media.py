"""The media library and the playlists: see them, edit a simple playlist, assign one.

Media files are imported on central's machine (`busfleet central media import`); playlists
with schedules, windows and geo-fences are written as files there too. Here a dispatcher sees
both, makes or changes a simple playlist (media in order, the same duration each, all day)
and assigns a playlist to a bus.
"""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from central.dashboard.messages import AssignPlaylist, EditPlaylist
from central.dashboard.screens.base import DispatchScreen
from central.dashboard.text import plain
from protocols.requests import Listing
from protocols.schemas import Scalar


class MediaScreen(DispatchScreen):
    FOLLOWS_FLEET = False

    def __init__(self) -> None:
        super().__init__()
        self.playlists: dict[str, dict[str, Scalar]] = {}
        self.media_names: list[str] = []
        self._mounted = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "assign", "Assign playlist"),
        Binding("e", "edit", "Edit playlist"),
        Binding("c", "create", "New playlist"),
        Binding("r", "reload", "Refresh"),
    ]

    def body(self) -> ComposeResult:
        yield Static("Playlists (a: assign to a bus · e: edit · c: new)", classes="section")
        yield DataTable(id="playlists", cursor_type="row")
        yield Static("Media library", classes="section")
        yield DataTable(id="media", cursor_type="row")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#playlists", DataTable).add_columns(
            "playlist", "revision", "items", "media"
        )
        self.query_one("#media", DataTable).add_columns("name", "kind", "type", "size", "sha256")
        self.query_one("#playlists", DataTable).focus()
        self._mounted = True
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    # exit_on_error off: a screen closing while its answer is on the way is no crash
    @work(group="media", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        playlists = await self.dashboard.ask(Listing(what="playlists"))
        media = await self.dashboard.ask(Listing(what="media"))
        table = self.query_one("#playlists", DataTable)
        table.clear()
        self.playlists = {str(p.get("id")): p for p in playlists.tables.get("playlists", [])}
        for key, p in self.playlists.items():
            table.add_row(
                *map(plain, (key, p.get("revision"), p.get("items"), p.get("media"))), key=key
            )
        table = self.query_one("#media", DataTable)
        table.clear()
        self.media_names = [str(m.get("name")) for m in media.tables.get("media", [])]
        for m in media.tables.get("media", []):
            sha = str(m.get("sha256"))
            cells = (m.get("name"), m.get("kind"), m.get("mime"), m.get("size"), sha[:16])
            table.add_row(*map(plain, cells))

    def _selected(self) -> str | None:
        table = self.query_one("#playlists", DataTable)
        if not table.rows:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_assign(self) -> None:
        key = self._selected()
        if key is not None:
            self.post_message(AssignPlaylist(key))

    def action_edit(self) -> None:
        key = self._selected()
        p = self.playlists.get(key or "", {})
        seconds = p.get("seconds")
        self.post_message(
            EditPlaylist(key or "", str(p.get("media") or ""), seconds, self.media_names)
        )

    def action_create(self) -> None:
        self.post_message(EditPlaylist("", media_names=self.media_names))

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self._mounted:  # shown again: someone may have changed a playlist meanwhile
            self.action_reload()
