"""The command palette (ctrl+p): screens, actions and every bus and open alarm by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from central.dashboard.app import DashboardApp


class DispatchCommands(Provider):
    """Commands for dispatchers; each bus and each open alarm is a command, too."""

    @property
    def dash(self) -> DashboardApp:
        return cast("DashboardApp", self.app)

    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        d = self.dash
        out: list[tuple[str, Callable[[], object], str]] = [
            ("Fleet table", partial(d.switch_mode, "fleet"), "the fleet at a glance"),
            ("Alarms", partial(d.switch_mode, "alarms"), "acknowledge alarms"),
            ("Map", partial(d.switch_mode, "map"), "route shapes and buses"),
            ("Reports", partial(d.switch_mode, "reports"), "punctuality, proof of play, feedback"),
            ("Media and playlists", partial(d.switch_mode, "media"), "assign a playlist"),
            ("New passenger message", d.action_new_message, "targets, languages, validity"),
            ("Import a GTFS feed", d.action_import_gtfs, "a file on central's machine"),
            ("Help: every key", d.action_help, "the key reference"),
        ]
        for bus in sorted(d.fleet):
            out.append((f"Open bus {bus}", partial(d.open_bus, bus), "detail, commands"))
            out.append((f"Assign bus {bus}", partial(d.assign, bus), "trip, block or route"))
        for a in d.alarms.values():
            if a.state in ("active", "cleared"):
                out.append(
                    (f"Acknowledge {a.kind} on {a.bus}", partial(d.ack, a.id), a.text or a.state)
                )
        return out

    async def discover(self) -> Hits:
        for name, run, help_text in self._commands()[:8]:
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, run, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
