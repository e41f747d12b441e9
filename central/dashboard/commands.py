"""The command palette (ctrl+p): screens, actions and every bus and open alarm by name.

Like a screen, the palette reads the dashboard through its view (view.py) and posts messages
(messages.py) for what it opens or acknowledges; it never imports the app, which decides.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Matcher, Provider
from textual.content import Content
from textual.message import Message

from central.dashboard.messages import AckAlarm, BusAction
from central.dashboard.text import clean
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
            (
                "Timetables",
                partial(app.switch_mode, "timetables"),
                "versions, what changed, publish",
            ),
            # the app's own key actions (n, g, ?), run by name as its bindings run them
            (
                "New passenger message",
                partial(app.run_action, "new_message"),
                "targets, languages, validity",
            ),
            (
                "Live announcement",
                partial(app.run_action, "live_announce"),
                "spoken and shown on buses now",
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
            yield DiscoveryHit(_prompt(name, help_text), run, text=name)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, run, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, _prompt(name, help_text, matcher), run, text=name)


def _prompt(name: str, help_text: str, matcher: Matcher | None = None) -> Content:
    """A palette entry as literal text: the palette reads a str prompt and any help as markup,
    and these name buses and alarms. The help goes on the entry's second line, dimmed."""
    prompt = Content(clean(name))
    if matcher is not None:
        _, offsets = matcher.fuzzy_search.match(matcher.query, prompt.plain)
        for offset in offsets:
            prompt = prompt.stylize(matcher.match_style, offset, offset + 1)
    return Content.assemble(prompt, "\n", (clean(help_text), "dim"))
