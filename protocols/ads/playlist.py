"""Advertising documents: playlists of media items, schedules, targets and geo-fences.

The model is Xibo's (REFERENCE.md section 5). A `Playlist` holds the media `items` and the
`schedules` (campaigns) that say when, where and how often items play. It travels to the bus
*inside* its desired state (`DesiredState.ads`, the id stays in `DesiredState.playlist`): the
desired document is already versioned, validated whole, retained and re-sent to a bus that
was offline, so a second fetch path for the playlist would only add a way to fail. The price
is size: a playlist must fit in one MQTT payload (`codec.MAX_PAYLOAD`, 256 kB), which is
thousands of items; the media files themselves go over HTTP (`media_url` + sha256).

Everything here is pure; the schedule engine (`protocols.ads.schedule`) and the geo-fences
(`protocols.ads.fence`) take time and position as arguments.

Conventions: days and times of day are local to `Playlist.timezone` (an IANA name);
weekdays are ISO (1 = Monday ... 7 = Sunday); a schedule's `end` date is its last day.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Iterable
from typing import Annotated, Literal

import msgspec

from protocols.errors import CodecError

PLAYLIST_VERSION = 1
MAX_ITEM_SECONDS = 3600.0

Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Ident = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
# "HH:MM", 00:00 to 24:00 (24:00 only makes sense as the end of a window).
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
Lat = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
Metres = Annotated[float, msgspec.Meta(ge=0.0, le=100_000.0)]
MediaKind = Literal["image", "video", "html", "audio"]

ALL_WEEKDAYS = (1, 2, 3, 4, 5, 6, 7)


class Item(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One thing to show: a media file (by its sha256) for `duration_s` seconds."""

    id: Ident
    media: Sha256
    kind: MediaKind
    mime: str
    size: Annotated[int, msgspec.Meta(ge=1)]
    duration_s: Annotated[float, msgspec.Meta(gt=0.0, le=MAX_ITEM_SECONDS)]
    name: str = ""


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """A time-of-day window [start, end) in local time.

    `end` <= `start` crosses midnight (22:00-02:00); `start` == `end` is the whole day. The
    weekday and date rules apply to the moment itself, so 01:00 on Saturday in a Friday
    22:00-02:00 window plays only if Saturday is one of the schedule's weekdays.
    """

    start: ClockTime
    end: ClockTime

    def contains(self, minute_of_day: float) -> bool:
        start, end = _minutes(self.start), _minutes(self.end)
        if start == end:
            return True
        if start < end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end


class Circle(msgspec.Struct, frozen=True, kw_only=True, tag="circle", tag_field="shape"):
    """A round area: the bus is inside within `radius_m` of the centre."""

    id: Ident
    lat: Lat
    lon: Lon
    radius_m: Annotated[float, msgspec.Meta(gt=0.0, le=100_000.0)]
    hysteresis_m: Metres = 30.0  # the bus leaves only when this far outside


class Polygon(msgspec.Struct, frozen=True, kw_only=True, tag="polygon", tag_field="shape"):
    """An area given by its outline (lat, lon) points; the last point joins the first."""

    id: Ident
    points: list[tuple[Lat, Lon]]
    hysteresis_m: Metres = 30.0

    def __post_init__(self) -> None:
        if len(self.points) < 3:
            raise ValueError(f"polygon {self.id!r} needs at least 3 points")
        if len(self.points) > 1000:
            raise ValueError(f"polygon {self.id!r} has more than 1000 points")


GeoFence = Circle | Polygon


class Target(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where a schedule plays. Every non-empty list must match; an empty Target is everywhere.

    `routes`: the bus's current route is one of them; `buses`: the bus is one of them;
    `fences`: the bus is inside at least one of them.
    """

    routes: list[str] = msgspec.field(default_factory=list)
    buses: list[str] = msgspec.field(default_factory=list)
    fences: list[GeoFence] = msgspec.field(default_factory=list)


class Schedule(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A campaign: which items, on which days and hours, how often, with what precedence.

    Of the schedules active at a moment only those of the highest `priority` play (their
    items in rotation, the least recently played first). `max_plays_per_hour` caps the
    schedule's plays in each clock hour. `share_of_hour` (0..1) makes the schedule an
    interrupt (Xibo's ad interrupt): it plays, ahead of any priority, whenever it is behind
    its share of the hour so far, and never beyond that share.
    """

    id: Ident
    items: list[Ident]
    start: dt.date | None = None  # first day (local); None: already running
    end: dt.date | None = None  # last day (local), inclusive: the campaign ends on its date
    weekdays: list[Annotated[int, msgspec.Meta(ge=1, le=7)]] = msgspec.field(
        default_factory=lambda: list(ALL_WEEKDAYS)
    )
    windows: list[Window] = msgspec.field(default_factory=list)  # empty: all day
    priority: int = 0
    max_plays_per_hour: Annotated[int, msgspec.Meta(ge=0)] | None = None
    share_of_hour: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] | None = None
    target: Target = msgspec.field(default_factory=Target)

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError(f"schedule {self.id!r} has no items")
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"schedule {self.id!r} ends before it starts")

    def runs_on(self, day: dt.date) -> bool:
        """True if the schedule's date range and weekdays include `day`."""
        if self.start is not None and day < self.start:
            return False
        if self.end is not None and day > self.end:
            return False
        return day.isoweekday() in self.weekdays

    def active_at(self, local: dt.datetime) -> bool:
        """True if the schedule runs at this local moment (date, weekday and window)."""
        if not self.runs_on(local.date()):
            return False
        if not self.windows:
            return True
        minute = local.hour * 60 + local.minute + local.second / 60
        return any(w.contains(minute) for w in self.windows)


class Playlist(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Everything a bus needs to play a city's ads; validated whole when decoded."""

    v: int = PLAYLIST_VERSION
    id: Ident
    revision: int = 1  # grows with every change central makes
    timezone: str = "UTC"  # IANA name: the days and hours of the schedules are local to it
    media_url: str = ""  # where the bus downloads media: media_url + sha256
    items: list[Item]
    schedules: list[Schedule]

    def __post_init__(self) -> None:
        try:
            zone(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        ids = [i.id for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("item ids are not unique")
        schedule_ids = [s.id for s in self.schedules]
        if len(set(schedule_ids)) != len(schedule_ids):
            raise ValueError("schedule ids are not unique")
        known = set(ids)
        for s in self.schedules:
            missing = [i for i in s.items if i not in known]
            if missing:
                raise ValueError(f"schedule {s.id!r} names unknown item {missing[0]!r}")
        shapes: dict[str, GeoFence] = {}
        for s in self.schedules:
            for f in s.target.fences:
                if shapes.setdefault(f.id, f) != f:
                    raise ValueError(f"fence id {f.id!r} names two different areas")

    def item(self, item_id: str) -> Item:
        for i in self.items:
            if i.id == item_id:
                return i
        raise KeyError(item_id)

    def fences(self) -> list[GeoFence]:
        """Every distinct geo-fence the schedules target."""
        seen: dict[str, GeoFence] = {}
        for s in self.schedules:
            for f in s.target.fences:
                seen.setdefault(f.id, f)
        return list(seen.values())

    def local(self, t: float) -> dt.datetime:
        """Unix time `t` as an aware datetime in the playlist's timezone."""
        return dt.datetime.fromtimestamp(t, zone(self.timezone))

    def needed_media(
        self, first_day: dt.date, days: int, bus: str | None = None
    ) -> dict[str, Item]:
        """Media (sha256 -> an item using it) that may play from `first_day` for `days` days.

        With `bus`, schedules targeting other buses are left out; route and geo targets are
        kept (the bus may be sent on another route, or drive into the area, any time).
        """
        span = [first_day + dt.timedelta(days=n) for n in range(max(1, days))]
        wanted: set[str] = set()
        for s in self.schedules:
            if bus is not None and s.target.buses and bus not in s.target.buses:
                continue
            if any(s.runs_on(day) for day in span):
                wanted.update(s.items)
        return {i.media: i for i in self.items if i.id in wanted}

    def media_url_of(self, sha256: str, base: str = "") -> str:
        """The download address of a media file; `base` overrides the playlist's."""
        return (base or self.media_url).rstrip("/") + "/" + sha256


@functools.lru_cache(maxsize=64)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The timezone of that IANA name (cached; the lookup reads the tz database once)."""
    return zoneinfo.ZoneInfo(name)


def _minutes(clock: str) -> int:
    return int(clock[:2]) * 60 + int(clock[3:5])


_decoder = msgspec.json.Decoder(Playlist)


def decode_playlist(data: bytes) -> Playlist:
    """Parse and validate a playlist document (JSON); raise CodecError if it is not one."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CodecError(f"Playlist: {exc}", schema="Playlist") from exc
    except RecursionError:
        raise CodecError("Playlist: nested too deeply", schema="Playlist") from None


def playlist_from_object(obj: object) -> Playlist:
    """Validate a playlist given as Python objects (from TOML, say); CodecError if invalid."""
    try:
        return msgspec.convert(obj, Playlist)
    except msgspec.ValidationError as exc:
        raise CodecError(f"Playlist: {exc}", schema="Playlist") from exc


def encode_playlist(playlist: Playlist) -> bytes:
    return msgspec.json.encode(playlist)


def media_ids(items: Iterable[Item]) -> set[str]:
    return {i.media for i in items}
