"""Messages the MQTT worker posts to the app: it never touches a widget itself."""

from __future__ import annotations

from textual.message import Message

from protocols.requests import DispatchReply
from protocols.schemas import Alarm, CentralStats, FleetEntry


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
