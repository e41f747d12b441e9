"""A small keyboard form in a modal: the dialogs for acknowledging, assigning, messaging...

Enter goes to the next field and, on the last one, sends; ctrl+s sends from any field;
escape cancels. The result is {field name: text}, or None when cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Static

from central.dashboard.text import plain


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    value: str = ""
    placeholder: str = ""
    suggestions: Sequence[str] = ()


class FormScreen(ModalScreen[dict[str, str] | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "send", "Send"),
    ]

    def __init__(self, title: str, fields: Sequence[Field], *, note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.fields = list(fields)
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Label(plain(self.title_text), id="form-title")
            if self.note:
                yield Static(plain(self.note), id="form-note")
            for f in self.fields:
                yield Label(plain(f.label))
                suggester = (
                    SuggestFromList(f.suggestions, case_sensitive=False) if f.suggestions else None
                )
                yield Input(
                    value=f.value,
                    placeholder=f.placeholder,
                    id=f"field-{f.name}",
                    suggester=suggester,
                )
            yield Label("enter: next field / send · ctrl+s: send · escape: cancel", id="form-keys")

    def on_mount(self) -> None:
        first_empty = next((f for f in self.fields if not f.value), self.fields[0])
        self.query_one(f"#field-{first_empty.name}", Input).focus()

    def values(self) -> dict[str, str]:
        return {f.name: self.query_one(f"#field-{f.name}", Input).value for f in self.fields}

    def on_input_submitted(self, event: Input.Submitted) -> None:
        names = [f"field-{f.name}" for f in self.fields]
        index = names.index(event.input.id or "")
        if index == len(names) - 1:
            self.action_send()
        else:
            self.query_one(f"#{names[index + 1]}", Input).focus()

    def action_send(self) -> None:
        self.dismiss(self.values())

    def action_cancel(self) -> None:
        self.dismiss(None)
