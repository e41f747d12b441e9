"""The dashboard's messages: from the MQTT worker down to the app, and from screens up to it.

Nothing but the app acts on them. The link (a worker) never touches a widget: it posts what
arrived. A screen, a widget or the command palette never calls the app: it posts what the
dispatcher asked for (`BusAction(bus, "assign")`, `AckAlarm(id)`, ...), the message bubbles up
to the app and the app decides what happens (a form, a request to central, another screen).
Textual's "attributes down, messages up"; what screens read comes down through view.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from textual.message import Message

from protocols.requests import DispatchReply
from protocols.schemas import Alarm, CentralStats, FleetEntry, Scalar

# -- from the link --------------------------------------------------------------------------


class FleetUpdated(Message):
    """Everything that arrived in one coalescing interval (the newest of each)."""

    def __init__(
        self,
        entries: list[FleetEntry],
        stats: CentralStats | None,
        alarms: dict[str, Alarm | None] | None = None,
    ) -> None:
        super().__init__()
        self.entries = entries
        self.stats = stats
        self.alarms = alarms or {}


class LinkStatus(Message):
    def __init__(self, text: str, connected: bool = False) -> None:
        super().__init__()
        self.text = text
        self.connected = connected


class ReplyReceived(Message):
    def __init__(self, reply: DispatchReply) -> None:
        super().__init__()
        self.reply = reply


# -- from screens, widgets and the command palette ------------------------------------------

BusActionName = Literal["open", "map", "assign", "playlist", "command", "ack", "logs"]


@dataclass
class BusAction(Message):
    """The dispatcher wants to do `action` with `bus` (None: the form asks which bus)."""

    bus: str | None
    action: BusActionName


@dataclass
class AckAlarm(Message):
    """The dispatcher wants to acknowledge this alarm (the app asks for a note)."""

    alarm_id: str


@dataclass
class AssignPlaylist(Message):
    """The dispatcher wants to put this playlist on a bus (the app asks which)."""

    playlist: str


@dataclass
class EditPlaylist(Message):
    """The dispatcher wants to make or change a simple playlist ("" : a new one)."""

    playlist: str
    media: str = ""
    seconds: Scalar = None
    media_names: list[str] = field(default_factory=list)


@dataclass
class PublishVersion(Message):
    """The dispatcher wants to publish timetable `version` (the app asks from when, to whom)."""

    version: int
    groups: list[str] = field(default_factory=list)  # the groups central knows, to suggest
