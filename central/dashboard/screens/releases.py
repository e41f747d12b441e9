"""Software releases (issue 16): where each rollout stands and which bus runs what.

Two tables from central's answers: the rollouts (`RolloutStatus`: version, state, wave k of
n, buses per state; a halted one says why below) and the buses (`BusReleases`: the version
each runs, its slot and update phase as it reports them, the version central wants on it).
Rollouts are started and cancelled with `busfleet central release ...`; this screen looks.
Everything a bus or a dispatcher wrote is shown as literal text (central/dashboard/text.py).
Both tables fit an 80-column terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from central.dashboard.screens.base import DispatchScreen
from central.dashboard.text import line, lines, plain
from protocols.release_requests import BusReleases, RolloutStatus
from protocols.requests import Record

__all__ = ["ReleasesScreen", "bus_cells", "halted_text", "rollout_cells"]

MAX_PAGES = 50  # a central that keeps answering "next" is not followed forever
ROLLOUT_COLUMNS = ("rollout", "version", "state", "wave", "upd", "asg", "pend", "fail")
BUS_COLUMNS = ("bus", "runs", "slot", "phase", "wanted", "central wants")
STATE_STYLE = {"running": "cyan", "halted": "bold red", "done": "green", "cancelled": "dim"}
REASON = "halted_reason"
PHASE_STYLE = {"failed": "red", "refused": "red", "trial": "yellow", "idle": ""}


def _short(value: object, width: int) -> Text:
    text = plain(value)
    text.truncate(width, overflow="ellipsis")
    return text


def rollout_cells(r: Mapping[str, Any]) -> tuple[Text, ...]:
    """One rollout's row: id, version, state, wave k/n, buses updated, assigned, pending and
    failed (refused ones counted with the failed)."""
    failed = _int(r.get("failed")) + _int(r.get("refused"))
    state = str(r.get("state") or "")
    return (
        _short(r.get("id"), 18),
        _short(r.get("version"), 10),
        plain(state, STATE_STYLE.get(state, "")),
        plain(f"{r.get('wave')}/{r.get('waves')}"),
        plain(_int(r.get("updated"))),
        plain(_int(r.get("assigned"))),
        plain(_int(r.get("pending"))),
        plain(failed, "red" if failed else ""),
    )


def bus_cells(r: Mapping[str, Any]) -> tuple[Text, ...]:
    """One bus's row: id, the version it runs, slot, update phase, the version it works on,
    the version central wants on it."""
    phase = str(r.get("phase") or "")
    return (
        _short(r.get("bus"), 16),
        _short(r.get("running") or "—", 10),
        _short(r.get("slot") or "", 8),
        plain(phase or "—", PHASE_STYLE.get(phase, "")),
        _short(r.get("wanted") or "", 10),
        _short(r.get("desired") or "—", 10),
    )


def halted_text(rollouts: list[Record]) -> Text:
    """Why each halted rollout halted, one line each ("" when none did)."""
    rows = [
        line((str(r.get("id")), "bold red"), f" {r.get('version')}: ", plain(r.get(REASON)))
        for r in rollouts
        if r.get("state") == "halted"
    ]
    return lines(rows) if rows else plain("")


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class ReleasesScreen(DispatchScreen):
    FOLLOWS_FLEET = False

    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "reload", "Refresh")]

    def __init__(self) -> None:
        super().__init__()
        self.rollouts: list[Record] = []
        self.buses: list[Record] = []
        self._mounted = False

    def body(self) -> ComposeResult:
        yield Static("Rollouts (busfleet central release rollout VERSION)", classes="section")
        yield DataTable(id="rollouts", cursor_type="row")
        yield Static("", id="halted")
        yield Static("Which bus runs what", classes="section")
        yield DataTable(id="bus-releases", cursor_type="row")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#rollouts", DataTable).add_columns(*ROLLOUT_COLUMNS)
        self.query_one("#bus-releases", DataTable).add_columns(*BUS_COLUMNS)
        self.query_one("#rollouts", DataTable).focus()
        self._mounted = True
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    # exit_on_error off: a screen closing while its answer is on the way is no crash
    @work(group="releases", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        rollouts, error = await self._records(RolloutStatus())
        buses, bus_error = await self._records(BusReleases())
        self.rollouts, self.buses = rollouts, buses
        table = self.query_one("#rollouts", DataTable)
        table.clear()
        for r in reversed(rollouts):  # the newest first
            table.add_row(*rollout_cells(r), key=str(r.get("id")))
        table = self.query_one("#bus-releases", DataTable)
        table.clear()
        for b in buses:
            table.add_row(*bus_cells(b), key=str(b.get("bus")))
        note = self.query_one("#halted", Static)
        if error or bus_error:
            note.update(plain(f"cannot list: {error or bus_error}", "red"))
        elif not rollouts:
            note.update(plain("no rollout yet"))
        else:
            note.update(halted_text(rollouts))

    async def _records(self, request: RolloutStatus | BusReleases) -> tuple[list[Record], str]:
        records: list[Record] = []
        for _ in range(MAX_PAGES):
            reply = await self.dashboard.ask(request)
            if not reply.ok:
                return records, reply.error
            records.extend(reply.records)
            after = reply.result.get("next")
            if not isinstance(after, int) or after <= request.offset:
                break
            request = msgspec.structs.replace(request, offset=after)
        return records, ""

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self._mounted:  # shown again: a rollout may have moved on
            self.action_reload()
