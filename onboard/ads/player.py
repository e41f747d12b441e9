"""The ad player: plays the active playlist item after item and proves every play.

Time is an argument (`step(now)` returns when it wants to be called again), so tests drive
hours of plays in milliseconds and the runtime drives it from the wall clock. The player
shows only media present in the verified cache; a play is recorded when it has run its full
duration (a play cut short by a shutdown or a new playlist is not a play an advertiser pays
for), with where the bus was: route and stop area always, coordinates only if enabled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container
from dataclasses import dataclass

from protocols.ads.fence import FenceTracker
from protocols.ads.playlist import Item, Playlist
from protocols.ads.schedule import Choice, Context, PlayHistory, hour_start, next_item
from protocols.schemas import Scalar

log = logging.getLogger("busfleet.onboard.ads")

IDLE_RECHECK_S = 5.0  # with nothing to play, look again this often (a fence, a daypart)


@dataclass(frozen=True, slots=True)
class PlayRecord:
    """Proof of one play."""

    item: str
    media: str
    schedule: str
    playlist: str
    revision: int
    start: float
    end: float
    bus: str
    route: str | None
    stop_area: str | None
    lat: float | None = None
    lon: float | None = None
    interrupt: bool = False

    def data(self) -> dict[str, Scalar]:
        """The event data sent to central (kind "play"); absent keys are left out."""
        out: dict[str, Scalar] = {
            "item": self.item,
            "media": self.media,
            "schedule": self.schedule,
            "playlist": self.playlist,
            "revision": self.revision,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "bus": self.bus,
        }
        if self.route is not None:
            out["route"] = self.route
        if self.stop_area is not None:
            out["stop_area"] = self.stop_area
        if self.lat is not None and self.lon is not None:
            out["lat"], out["lon"] = round(self.lat, 5), round(self.lon, 5)
        if self.interrupt:
            out["interrupt"] = True
        return out


@dataclass(frozen=True, slots=True)
class Showing:
    """What the display's ad slot shows now."""

    item_id: str
    media: str
    mime: str
    kind: str


@dataclass(slots=True)
class _Playing:
    choice: Choice
    playlist: Playlist
    start: float
    ends: float
    route: str | None  # where the bus was when the play started
    stop_area: str | None
    lat: float | None
    lon: float | None


class Player:
    """Chooses and times the plays of one bus."""

    def __init__(
        self,
        bus: str,
        *,
        have: Container[str],
        on_play: Callable[[PlayRecord], None],
        on_show: Callable[[Showing | None], None] = lambda _s: None,
        record_location: bool = False,
        max_accuracy_m: float = 50.0,
    ) -> None:
        self.bus = bus
        self.have = have
        self.on_play = on_play
        self.on_show = on_show
        self.record_location = record_location
        self.playlist: Playlist | None = None
        self.history = PlayHistory()
        self.fences = FenceTracker([], max_accuracy_m=max_accuracy_m)
        self.route: str | None = None
        self.stop_area: str | None = None
        self.position: tuple[float, float] | None = None
        self.playing: _Playing | None = None
        self.plays = 0
        self.showing: Showing | None = None

    # -- inputs ---------------------------------------------------------------------------
    def switch(self, playlist: Playlist | None) -> None:
        """Play from this playlist on (the item on screen runs to its end first)."""
        self.playlist = playlist
        self.fences.replace(playlist.fences() if playlist else [])

    def set_route(self, route: str | None, stop_area: str | None = None) -> None:
        self.route, self.stop_area = route, stop_area

    def update_position(self, lat: float, lon: float, accuracy_m: float | None) -> None:
        for change in self.fences.update(lat, lon, accuracy_m):
            log.info("geo-fence %s %s", change.fence, "entered" if change.inside else "left")
        if accuracy_m is None or accuracy_m <= self.fences.max_accuracy_m:
            self.position = (lat, lon)

    # -- time -----------------------------------------------------------------------------
    def step(self, now: float) -> float:
        """Finish the play that is due, start the next; returns when to step again."""
        playing = self.playing
        if playing is not None and now < playing.start - 1.0:
            # The clock was set back (from GPS, say): this play cannot be timed; drop it.
            log.warning("clock went back %.0f s: play of %s dropped", playing.start - now,
                        playing.choice.item.id)  # fmt: skip
            self.playing = playing = None
        if playing is not None:
            if now < playing.ends:
                return playing.ends
            self._finish(playing, playing.ends)
        choice = self._choose(now)
        if choice is None:
            self._show(None)
            return now + IDLE_RECHECK_S
        self._start(choice, now)
        assert self.playing is not None
        return self.playing.ends

    def stop(self) -> None:
        """Abandon the current play (not recorded) and clear the slot."""
        self.playing = None
        self._show(None)

    def _choose(self, now: float) -> Choice | None:
        if self.playlist is None:
            return None
        ctx = Context(bus=self.bus, route=self.route, inside=frozenset(self.fences.inside))
        return next_item(self.playlist, now, ctx, self.history, self.have)

    def _start(self, choice: Choice, now: float) -> None:
        item: Item = choice.item
        assert self.playlist is not None
        lat = lon = None
        if self.record_location and self.position is not None:
            lat, lon = self.position
        self.playing = _Playing(
            choice, self.playlist, now, now + item.duration_s, self.route, self.stop_area, lat, lon
        )
        hour = hour_start(self.playlist.local(now))
        self.history.record(choice.schedule.id, item.id, hour, now, item.duration_s)
        self._show(Showing(item.id, item.media, item.mime, item.kind))

    def _finish(self, playing: _Playing, end: float) -> None:
        self.playing = None
        item = playing.choice.item
        record = PlayRecord(
            item=item.id,
            media=item.media,
            schedule=playing.choice.schedule.id,
            playlist=playing.playlist.id,
            revision=playing.playlist.revision,
            start=playing.start,
            end=end,
            bus=self.bus,
            route=playing.route,
            stop_area=playing.stop_area,
            lat=playing.lat,
            lon=playing.lon,
            interrupt=playing.choice.interrupt,
        )
        self.plays += 1
        self.on_play(record)

    def _show(self, showing: Showing | None) -> None:
        if showing != self.showing:
            self.showing = showing
            self.on_show(showing)
