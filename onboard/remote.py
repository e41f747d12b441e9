"""The agent's own commands from central: resend history, announce to passengers, restart.

Handlers for onboard/link/commands.py's `Commands` (the `driver_message` handler is the driver
terminal's). Each checks its arguments and returns a `Result`; none raises for bad input.
"""

from __future__ import annotations

import asyncio

from onboard.link.commands import Handler, Result, typed_as
from onboard.link.outbox import Outbox
from protocols.requests import Announce, Resend, Restart
from protocols.schemas import Command

__all__ = ["MAX_ANNOUNCEMENT", "AgentCommands"]

MAX_ANNOUNCEMENT = 500  # characters kept of an announcement


class AgentCommands:
    """`resend`, `announce` and `restart`; `handlers()` for `Commands`."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.announcements: list[str] = []
        self.restart_requested = asyncio.Event()

    def handlers(self) -> dict[str, Handler]:
        return {"resend": self.resend, "announce": self.announce, "restart": self.restart}

    def resend(self, cmd: Command) -> Result:
        """Send stored history again from `since` (unix seconds) on; its arguments are checked
        against the vocabulary (ValueError: the command fails with the reason)."""
        count = self.outbox.requeue_since(typed_as(cmd, Resend).since)
        return Result("ok", data={"records": count})

    def announce(self, cmd: Command) -> Result:
        """A text for passengers (the portal's announcements)."""
        text = typed_as(cmd, Announce).text
        if not text.strip():
            return Result("failed", "announce needs a non-empty 'text'")
        self.announcements.append(text[:MAX_ANNOUNCEMENT])
        return Result("ok")

    def restart(self, cmd: Command) -> Result:
        """Ask the agent to stop and be run again (once its result reached central)."""
        typed_as(cmd, Restart)
        self.restart_requested.set()
        return Result("ok")
