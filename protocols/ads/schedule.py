"""The schedule engine: which item plays next, given the time, the bus and what played.

Pure: the caller passes the time (unix seconds), the bus's context and the play history.
The rules, in order:

1. A schedule is eligible when it runs at that local moment (date range, weekday, time-of-day
   window), its target matches the bus (route, bus id, inside one of its geo-fences), its
   plays in this clock hour are under `max_plays_per_hour`, and at least one of its items'
   media is on the bus.
2. Interrupts (`share_of_hour`) that are behind their share of the hour so far go first,
   the highest priority and then the furthest behind; an interrupt that has had its share of
   this hour does not play again until the next hour.
3. Otherwise, of the other eligible schedules only the highest priority plays; their items
   rotate, the least recently played first (ties: the order in the playlist).

Hours are clock hours in the playlist's timezone; a play counts in the hour it started.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Container
from dataclasses import dataclass, field

from protocols.ads.playlist import Item, Playlist, Schedule, Target


@dataclass(frozen=True, slots=True)
class Context:
    """What the engine knows of the bus: its id, its route and the fences it is in."""

    bus: str
    route: str | None = None
    inside: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Choice:
    item: Item
    schedule: Schedule
    interrupt: bool = False


@dataclass(slots=True)
class PlayHistory:
    """Plays the engine must remember: per schedule and clock hour, and when items last ran.

    Kept small on purpose: counters for the current hour only, and the last start per item.
    """

    hour: float = float("-inf")  # unix start of the hour the counters are for
    plays: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    last_played: dict[str, float] = field(default_factory=dict)  # item id -> unix start

    def record(self, schedule_id: str, item_id: str, hour_start: float, start: float,
               seconds: float) -> None:  # fmt: skip
        """A play of `seconds` that started at `start`, in the hour starting at `hour_start`."""
        self._roll(hour_start)
        self.plays[schedule_id] += 1
        self.seconds[schedule_id] = self.seconds.get(schedule_id, 0.0) + seconds
        self.last_played[item_id] = start

    def in_hour(self, schedule_id: str, hour_start: float) -> tuple[int, float]:
        """(plays, seconds) of the schedule in the hour starting at `hour_start`."""
        if hour_start != self.hour:
            return 0, 0.0
        return self.plays[schedule_id], self.seconds.get(schedule_id, 0.0)

    def _roll(self, hour_start: float) -> None:
        if hour_start != self.hour:
            self.hour = hour_start
            self.plays.clear()
            self.seconds.clear()


def hour_start(local: dt.datetime) -> float:
    """Unix time of the start of the local clock hour containing `local`."""
    return local.replace(minute=0, second=0, microsecond=0).timestamp()


def targets(target: Target, ctx: Context) -> bool:
    """True if a schedule with this target may play on the bus in this context."""
    if target.routes and ctx.route not in target.routes:
        return False
    if target.buses and ctx.bus not in target.buses:
        return False
    return not target.fences or any(f.id in ctx.inside for f in target.fences)


def next_item(
    playlist: Playlist,
    now: float,
    ctx: Context,
    history: PlayHistory,
    have: Container[str] | None = None,
) -> Choice | None:
    """The item to play at unix time `now`, or None when nothing may play.

    `have` is the media present on the bus (sha256s); None means all of it.
    """
    local = playlist.local(now)
    hour = hour_start(local)
    elapsed = now - hour
    items = {i.id: i for i in playlist.items}
    interrupts: list[tuple[int, float, int, Schedule]] = []
    normal: list[Schedule] = []
    for index, s in enumerate(playlist.schedules):
        if not s.active_at(local) or not targets(s.target, ctx):
            continue
        if have is not None and not any(items[i].media in have for i in s.items):
            continue
        plays, seconds = history.in_hour(s.id, hour)
        if s.max_plays_per_hour is not None and plays >= s.max_plays_per_hour:
            continue
        if s.share_of_hour is None:
            normal.append(s)
            continue
        behind = s.share_of_hour * elapsed - seconds
        if seconds < s.share_of_hour * 3600 and behind > 0:
            interrupts.append((-s.priority, -behind, index, s))
    if interrupts:
        s = min(interrupts, key=lambda x: x[:3])[3]
        return Choice(_rotate(s.items, items, history, have), s, interrupt=True)
    if not normal:
        return None
    top = max(s.priority for s in normal)
    best: tuple[float, int] | None = None
    choice: Choice | None = None
    order = 0
    for s in normal:
        if s.priority != top:
            continue
        for item_id in s.items:
            item = items[item_id]
            order += 1
            if have is not None and item.media not in have:
                continue
            key = (history.last_played.get(item_id, float("-inf")), order)
            if best is None or key < best:
                best, choice = key, Choice(item, s)
    return choice


def _rotate(
    ids: list[str], items: dict[str, Item], history: PlayHistory, have: Container[str] | None
) -> Item:
    present = [items[i] for i in ids if have is None or items[i].media in have]
    return min(present, key=lambda i: history.last_played.get(i.id, float("-inf")))
