"""The agent's own commands from central: resend history, announce to passengers, restart.

Handlers for onboard/link/commands.py's `Commands` (the `driver_message` handler is the driver
terminal's). Each checks its arguments and returns a `Result`; none raises for bad input.

`announce` is a live announcement from city hall (issue 17): it goes to the audio's queue
with the highest priority and is shown at the moment its playback begins (two senses): on
the passenger displays, on the portal's announcements, and as a `live_announcement` event
(proof of when it went out). The command's result, ok, means the bus took it; `Commands`
answers "expired" for one that came too late, which is then neither spoken nor shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from onboard.audio.api import LIVE, Speaker, Utterance
from onboard.link.commands import Handler, Result, typed_as
from onboard.link.outbox import Outbox
from onboard.portal.content import Announcement
from protocols.requests import Announce, Resend, Restart
from protocols.schemas import Command, Scalar

__all__ = ["MAX_ANNOUNCEMENT", "AgentCommands", "LiveAnnouncement"]

log = logging.getLogger("busfleet.onboard.remote")

MAX_ANNOUNCEMENT = 500  # characters kept of an announcement
MAX_KEPT = 20  # announcements kept for the portal (it shows the last few)


@dataclass(frozen=True, slots=True)
class LiveAnnouncement:
    """A live announcement being spoken now: its id (the same on every bus) and texts."""

    id: str
    de: str
    en: str  # "" when central sent none


class LiveScreen(Protocol):
    """What a live announcement needs of the passenger display (onboard/display/server.py)."""

    def show_live(self, announcement: str, text_de: str, text_en: str = "") -> object: ...


Record = Callable[..., object]  # the agent's `record_event(kind, data)`


class AgentCommands:
    """`resend`, `announce` and `restart`; `handlers()` for `Commands`. The speaker and the
    display are asked for at each announcement (the agent builds them after this)."""

    def __init__(
        self,
        outbox: Outbox,
        speaker: Callable[[], Speaker] | None = None,
        display: Callable[[], LiveScreen | None] = lambda: None,
        record: Record | None = None,
    ) -> None:
        self.outbox = outbox
        self.announcements: list[Announcement] = []  # for the portal, in both languages
        self.restart_requested = asyncio.Event()
        self.speaker = speaker  # None: no audio, shown at once
        self.display = display
        self.record = record
        self.shown: list[LiveAnnouncement] = []  # the newest last (bounded): what went out

    def handlers(self) -> dict[str, Handler]:
        return {"resend": self.resend, "announce": self.announce, "restart": self.restart}

    def resend(self, cmd: Command) -> Result:
        """Send stored history again from `since` (unix seconds) on; its arguments are checked
        against the vocabulary (ValueError: the command fails with the reason)."""
        count = self.outbox.requeue_since(typed_as(cmd, Resend).since)
        return Result("ok", data={"records": count})

    def announce(self, cmd: Command) -> Result:
        """A live announcement: spoken (German, then English) and shown at the same moment."""
        command = typed_as(cmd, Announce)
        de = command.german[:MAX_ANNOUNCEMENT]
        en = (command.en or "").strip()[:MAX_ANNOUNCEMENT]
        live = LiveAnnouncement(command.announcement or cmd.id, de, en)
        texts = {"de": de, "en": en} if en else {"de": de}
        utterance = Utterance(kind="live", texts=texts, priority=LIVE, ref=live.id)
        if self.speaker is None:
            self._show(live)
            return Result("ok", data={"announcement": live.id})
        try:
            self.speaker().say(utterance, on_start=lambda _: self._show(live))
        except Exception as exc:  # whatever the audio's trouble: failed, and why
            log.warning("live announcement %s not taken by the audio: %s", live.id, exc)
            return Result("failed", f"the audio did not take it: {exc}")
        return Result("ok", data={"announcement": live.id})

    def _show(self, live: LiveAnnouncement) -> None:
        """At the moment it is spoken: on the displays, the portal and as an event."""
        kept = Announcement(live.de, live.en)
        self.announcements = [*self.announcements[-(MAX_KEPT - 1) :], kept]
        self.shown = [*self.shown[-(MAX_KEPT - 1) :], live]
        display = self.display()
        if display is not None:
            display.show_live(live.id, live.de, live.en)
        if self.record is not None:
            data: dict[str, Scalar] = {"id": live.id, "de": live.de, "en": live.en}
            self.record("live_announcement", data)

    def restart(self, cmd: Command) -> Result:
        """Ask the agent to stop and be run again (once its result reached central)."""
        typed_as(cmd, Restart)
        self.restart_requested.set()
        return Result("ok")
