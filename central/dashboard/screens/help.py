"""The help screen: every key of the app, of each screen and of the widgets that take keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from central.dashboard.text import plain


def bindings_of(cls: type) -> list[Binding]:
    """A class's own BINDINGS as Binding objects (tuples are allowed there, too)."""
    out = []
    for b in getattr(cls, "BINDINGS", []):
        out.append(b if isinstance(b, Binding) else Binding(*b))
    return out


def key_rows(scopes: Sequence[tuple[str, type]]) -> list[tuple[str, str, str]]:
    """(where, keys, what) for every binding of every scope, in order."""
    rows = []
    for where, cls in scopes:
        for b in bindings_of(cls):
            keys = ", ".join(_key(k) for k in b.key.split(","))
            rows.append((where, keys, b.description or b.action))
    return rows


NAMES = {
    "slash": "/",
    "question_mark": "?",
    "plus": "+",
    "minus": "-",
    "equals_sign": "=",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
}


def _key(key: str) -> str:
    key = key.strip()
    return NAMES.get(key, key)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close help"),
    ]

    def __init__(self, scopes: Sequence[tuple[str, type]]) -> None:
        super().__init__()
        self.scopes = scopes

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Label(
                "Keys · ctrl+p opens the command palette · escape closes this", id="help-title"
            )
            table: DataTable[Text] = DataTable(
                id="help-keys", cursor_type="row", zebra_stripes=True
            )
            yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("where", "keys", "what")
        for row in key_rows(self.scopes):
            table.add_row(*map(plain, row))
        table.focus()
