"""The command palette (ctrl+p): screens, actions and every bus and open alarm by name.

Like a screen, the palette reads the dashboard through its view (view.py) and posts messages
(messages.py) for what it opens or acknowledges; it never imports the app, which decides.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message

from central.dashboard.messages import AckAlarm, BusAction
from central.dashboard.view import view_of


class DispatchCommands(Provider):
    """Commands for dispatchers; each bus and each open alarm is a command, too."""

    def _post(self, message: type[Message], *args: Any) -> Callable[[], object]:
        """A command that posts `message(*args)` to the app when chosen."""
        return lambda: self.app.post_message(message(*args))

    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app, d = self.app, view_of(self.app)
        out: list[tuple[str, Callable[[], object], str]] = [
            ("Fleet table", partial(app.switch_mode, "fleet"), "the fleet at a glance"),
            ("Alarms", partial(app.switch_mode, "alarms"), "acknowledge alarms"),
            ("Map", partial(app.switch_mode, "map"), "route shapes and buses"),
            (
                "Reports",
                partial(app.switch_mode, "reports"),
                "punctuality, proof of play, feedback",
            ),
            ("Media and playlists", partial(app.switch_mode, "media"), "assign a playlist"),
            # the app's own key actions (n, g, ?), run by name as its bindings run them
            (
                "New passenger message",
                partial(app.run_action, "new_message"),
                "targets, languages, validity",
            ),
            (
                "Import a GTFS feed",
                partial(app.run_action, "import_gtfs"),
                "a file on central's machine",
            ),
            ("Help: every key", partial(app.run_action, "help"), "the key reference"),
        ]
        for bus in sorted(d.fleet):
            out.append((f"Open bus {bus}", self._post(BusAction, bus, "open"), "detail, commands"))
            out.append(
                (f"Assign bus {bus}", self._post(BusAction, bus, "assign"), "trip, block or route")
            )
        for a in d.alarms.values():
            if a.state in ("active", "cleared"):
                out.append(
                    (
                        f"Acknowledge {a.kind} on {a.bus}",
                        self._post(AckAlarm, a.id),
                        a.text or a.state,
                    )
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
