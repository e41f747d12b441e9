"""A bus's own log lines, as `busfleet central logs` prints them: scrollable, newest last.

The app sends the bus a `logs` command (an order: the app's to give) and tells this screen the
command's id (`asked`); the screen asks central for the answer (`CommandAnswer`, a look)
until the bus gave it or WAIT_S passed. Lines are the bus's text: literal, never markup.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static

from central.dashboard.text import plain
from central.dashboard.view import DashboardView, view_of
from protocols.errors import CodecError
from protocols.logtext import unpack
from protocols.requests import CommandAnswer, DispatchReply

__all__ = ["BusLogScreen"]

WAIT_S = 60.0  # then the screen says the bus did not answer (the command waits on)
POLL_S = 1.0
MAX_SHOWN = 20_000  # lines kept in the view


class BusLogScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, bus: str) -> None:
        super().__init__()
        self.bus = bus
        self.cmd_id: str | None = None
        self.lines: list[str] = []

    @property
    def dashboard(self) -> DashboardView:
        return view_of(self.app)

    def compose(self) -> ComposeResult:
        yield Static(plain(f"log of {self.bus}: asking…"), id="log-status")
        yield RichLog(id="log-lines", markup=False, highlight=False, max_lines=MAX_SHOWN)
        yield Footer()

    def status(self, text: str, style: str = "") -> None:
        self.query_one("#log-status", Static).update(plain(f"log of {self.bus}: {text}", style))

    def asked(self, reply: DispatchReply) -> None:
        """The app's `logs` command was sent (or refused): wait for the bus's answer."""
        if not reply.ok:
            self.status(f"not sent: {reply.error}", "red")
            return
        self.cmd_id = str(reply.result.get("id"))
        self.status(f"waiting for the bus (command {self.cmd_id})…")
        self._wait()

    @work(group="bus-log", exclusive=True, exit_on_error=False)
    async def _wait(self) -> None:
        assert self.cmd_id is not None
        deadline = time.monotonic() + WAIT_S
        while True:
            reply = await self.dashboard.ask(CommandAnswer(bus=self.bus, id=self.cmd_id))
            status = reply.result.get("status")
            if not reply.ok or status != "sent":
                break
            if time.monotonic() > deadline:
                self.status(
                    f"no answer in {WAIT_S:.0f} s (offline?); command {self.cmd_id} waits for "
                    "the bus until its expiry",
                    "red",
                )
                return
            await asyncio.sleep(POLL_S)
        self.show(reply)

    def show(self, reply: DispatchReply) -> None:
        r = reply.result
        if not reply.ok:
            self.status(f"cannot ask central: {reply.error}", "red")
            return
        if r.get("status") != "ok":
            self.status(f"{r.get('status')}: {r.get('reason') or ''}", "red")
            return
        packed = r.get("log")
        try:
            text = unpack(packed) if isinstance(packed, str) else ""
        except CodecError as exc:
            self.status(f"the bus sent a log that cannot be read: {exc}", "red")
            return
        self.lines = text.split("\n") if text else []
        view = self.query_one("#log-lines", RichLog)
        view.clear()
        for line in self.lines:
            view.write(plain(line))
        cut = "; older lines left out (capped)" if r.get("truncated") else ""
        self.status(f"{len(self.lines)} lines of the last hour{cut} · escape: back")
