"""The media library and the playlists: what central has, and assigning a playlist to a bus.

Media are imported and playlists built with `busfleet central media import` / `playlist
import` on central's machine; here dispatchers see them and assign them.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from central.dashboard.screens.base import DispatchScreen


class MediaScreen(DispatchScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "assign", "Assign playlist"),
        Binding("r", "reload", "Refresh"),
    ]

    def body(self) -> ComposeResult:
        yield Static("Playlists (a: assign the selected one to a bus)", classes="section")
        yield DataTable(id="playlists", cursor_type="row")
        yield Static("Media library", classes="section")
        yield DataTable(id="media", cursor_type="row")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#playlists", DataTable).add_columns("playlist", "revision", "items")
        self.query_one("#media", DataTable).add_columns("name", "kind", "type", "size", "sha256")
        self.query_one("#playlists", DataTable).focus()
        self.action_reload()

    def action_reload(self) -> None:
        self.run_worker(self._load(), group="media", exclusive=True)

    async def _load(self) -> None:
        playlists = await self.dash.request("list", what="playlists")
        media = await self.dash.request("list", what="media")
        table = self.query_one("#playlists", DataTable)
        table.clear()
        for p in playlists.tables.get("playlists", []):
            table.add_row(p.get("id"), p.get("revision"), p.get("items"), key=str(p.get("id")))
        table = self.query_one("#media", DataTable)
        table.clear()
        for m in media.tables.get("media", []):
            sha = str(m.get("sha256"))
            table.add_row(m.get("name"), m.get("kind"), m.get("mime"), m.get("size"), sha[:16])

    def action_assign(self) -> None:
        table = self.query_one("#playlists", DataTable)
        if not table.rows:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.dash.choose_playlist(None, playlist=key)
