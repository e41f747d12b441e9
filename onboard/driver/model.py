"""What the driver's terminal shows, as a pure function of the bus's state and the clock.

The page in the cab only renders a `DriverState`; every decision is made here (how late counts
as late, which messages are still listed, what of the path the map shows and how it is turned),
so it can be tested with hand-made inputs and works the same with the uplink down.

Units: times are unix seconds, delays positive when late. The map is in metres on the screen's
axes (x to the right, y downwards) with the bus at (0, 0) and the path ahead pointing up.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from onboard.journey.plan import TripPlan
from onboard.journey.states import JourneyState
from protocols.geo import EARTH_RADIUS_M, Polyline

# Schedule adherence bands (delay in seconds, positive = late). Early is the worse fault in
# transit (passengers miss a bus that left early), so its band is narrower than late's.
EARLY_S = -60
LATE_S = 180
VERY_LATE_S = 600

MAP_BEHIND_M = 200.0  # of the path already driven, greyed
MAP_AHEAD_M = 1500.0
MAP_MAX_POINTS = 300  # a dense shape is thinned to this many vertices on each side
MAP_MIN_SPAN_M = 400.0  # the view never zooms in further than this (a bus standing still)
MAP_MARGIN_M = 40.0

SENT_SHOWN_S = 3600.0  # canned messages stay listed this long
SENT_SHOWN_MAX = 5
ACKED_SHOWN_S = 3600.0  # acknowledged dispatch messages stay listed (below the open ones)
ACKED_SHOWN_MAX = 3
EMERGENCY_SHOWN_S = 600.0  # the small confirmation beside the emergency button
UPCOMING_MAX = 4


@dataclass(frozen=True, slots=True)
class Canned:
    """A message the driver sends with two taps; `severity` as in `protocols.schemas.Event`.

    `label` (English) is what dispatch reads in the event; the terminal shows `label_de` on
    a German page (the page's other texts are in onboard/driver/static/driver.js)."""

    code: str
    label: str
    severity: int
    label_de: str = ""


CANNED: tuple[Canned, ...] = (
    Canned("delay_traffic", "Delay: traffic", 1, "Verspätung: Verkehr"),
    Canned("accident", "Accident", 2, "Unfall"),
    Canned("vehicle_defect", "Vehicle defect", 2, "Fahrzeugdefekt"),
    Canned("passenger_incident", "Passenger incident", 2, "Vorfall mit Fahrgast"),
    Canned("full_bus", "Bus full", 1, "Bus voll"),
)
CANNED_BY_CODE = {c.code: c for c in CANNED}
EMERGENCY_SEVERITY = 4  # the highest there is: "emergency" in protocols.schemas.Event


@dataclass(frozen=True, slots=True)
class DispatchMessage:
    """A message from dispatch, as the bus keeps it until (and after) the driver's ack."""

    id: str
    text: str
    sent_t: float  # central's clock
    received_t: float  # the bus's clock
    acked_t: float | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Something the driver sent (canned | emergency | ack) and whether central stored it."""

    seq: int  # its outbox sequence number
    kind: str
    code: str  # the canned code, or the acknowledged message's id
    t: float
    delivered: bool  # central's receipt arrived


@dataclass(frozen=True, slots=True)
class StopRow:
    name: str
    scheduled: float
    expected: float | None


@dataclass(frozen=True, slots=True)
class MapStop:
    x: float
    y: float
    name: str
    next: bool  # the stop the bus drives to (or stands at)


@dataclass(frozen=True, slots=True)
class MapView:
    """The path around the bus, turned so that the direction of travel points up."""

    behind: tuple[tuple[float, float], ...]
    ahead: tuple[tuple[float, float], ...]
    detour: tuple[tuple[float, float], ...]  # the diverted part of the path ahead, if in view
    stops: tuple[MapStop, ...]
    extent: tuple[float, float, float, float]  # min x, min y, width, height (an SVG viewBox)
    heading_deg: float  # the path's heading at the bus: the map is rotated by this


@dataclass(frozen=True, slots=True)
class MessageView:
    id: str
    text: str
    received_t: float
    acked_t: float | None
    ack_pending: bool  # acknowledged on the bus, central's receipt not yet here


@dataclass(frozen=True, slots=True)
class SentView:
    code: str
    label: str
    t: float
    pending: bool


@dataclass(frozen=True, slots=True)
class EmergencyView:
    """Only what the driver needs to know it went: deliberately nothing that stands out."""

    t: float
    pending: bool


@dataclass(frozen=True, slots=True)
class DriverState:
    """Everything the terminal shows except the clock, which comes from the browser."""

    trip_id: str = ""
    block_id: str = ""
    line: str = ""
    destination: str = ""
    next_stop: str = ""
    at_stop: bool = False
    finished: bool = False
    stops: tuple[StopRow, ...] = ()  # after the next stop
    delay_s: int | None = None
    adherence: str = "unknown"  # early | on_time | late | very_late | unknown
    adherence_text: str = ""  # "+3:20" late, "\u22121:05" early (a minus sign)
    on_route: bool = True
    diversion: str | None = None
    map: MapView | None = None
    messages: tuple[MessageView, ...] = ()
    unacked: int = 0
    sent: tuple[SentView, ...] = ()
    emergency: EmergencyView | None = None
    canned: tuple[Canned, ...] = CANNED
    online: bool = False
    pending: int = 0  # items waiting for central's receipt
    # The page's language: the first of the displays' (`display.language`, German first);
    # the kiosk URL's ?lang= wins.
    languages: tuple[str, ...] = ("de",)


def adherence(delay_s: float | None) -> tuple[str, str]:
    """(band, text) for a delay: ("late", "+3:20"), ("early", "\u22121:05"), ("unknown", "");
    from an hour on in hours and minutes: ("very_late", "+8h14")."""
    if delay_s is None or not math.isfinite(delay_s):
        return "unknown", ""
    d = round(delay_s)
    if d < EARLY_S:
        band = "early"
    elif d > VERY_LATE_S:
        band = "very_late"
    elif d > LATE_S:
        band = "late"
    else:
        band = "on_time"
    sign = "+" if d > 0 else "\u2212" if d < 0 else ""
    minutes, seconds = divmod(abs(d), 60)
    if minutes >= 60:  # a trip of another hour (a wrong assignment?): minutes are enough
        hours, minutes = divmod(minutes, 60)
        return band, f"{sign}{hours}h{minutes:02d}"
    return band, f"{sign}{minutes}:{seconds:02d}"


def driver_state(
    journey: JourneyState | None,
    plan: TripPlan | None,
    messages: Sequence[DispatchMessage],
    outgoing: Sequence[Outgoing],
    *,
    now: float,
    online: bool = False,
    diversion: str | None = None,
    detour_m: tuple[float, float] | None = None,
    languages: tuple[str, ...] = ("de",),
) -> DriverState:
    """The terminal's state at `now` from the journey tracker's state and its plan (the map),
    the dispatch messages the bus holds and what the driver sent. `diversion` is the notice
    of a diversion in force, `detour_m` where its detour runs along the (diverted) plan."""
    acks = {o.code: o for o in outgoing if o.kind == "ack"}
    open_ = sorted((m for m in messages if m.acked_t is None), key=lambda m: -m.received_t)
    done = sorted(
        (m for m in messages if m.acked_t is not None and now - m.acked_t <= ACKED_SHOWN_S),
        key=lambda m: -(m.acked_t or 0.0),
    )[:ACKED_SHOWN_MAX]
    views = tuple(
        MessageView(
            m.id,
            m.text,
            m.received_t,
            m.acked_t,
            m.acked_t is not None and m.id in acks and not acks[m.id].delivered,
        )
        for m in (*open_, *done)
    )
    sent = tuple(
        SentView(o.code, CANNED_BY_CODE[o.code].label, o.t, not o.delivered)
        for o in sorted(outgoing, key=lambda o: -o.t)
        if o.kind == "canned" and o.code in CANNED_BY_CODE and now - o.t <= SENT_SHOWN_S
    )[:SENT_SHOWN_MAX]
    last_sos = max((o for o in outgoing if o.kind == "emergency"), key=lambda o: o.t, default=None)
    emergency = None
    if last_sos is not None and now - last_sos.t <= EMERGENCY_SHOWN_S:
        emergency = EmergencyView(last_sos.t, not last_sos.delivered)
    base = DriverState(
        diversion=diversion,
        messages=views,
        unacked=len(open_),
        sent=sent,
        emergency=emergency,
        online=online,
        pending=sum(not o.delivered for o in outgoing),
        languages=languages,
    )
    if journey is None:
        return base
    band, text = adherence(journey.delay_s)
    following = journey.upcoming[1 : 1 + UPCOMING_MAX]
    stops = tuple(StopRow(s.name, s.scheduled_t, s.expected_t) for s in following)
    view = None
    if plan is not None and journey.dist_m is not None and not journey.finished:
        view = map_view(plan, journey.dist_m, journey.stop_index, detour_m=detour_m)
    return dataclasses.replace(
        base,
        trip_id=journey.trip_id,
        block_id=journey.block_id or "",
        line=journey.route_short_name or journey.route_id,
        destination=journey.headsign,
        next_stop=journey.stop_name,
        at_stop=journey.at_stop,
        finished=journey.finished,
        stops=stops,
        delay_s=None if journey.delay_s is None else round(journey.delay_s),
        adherence=band,
        adherence_text=text,
        on_route=journey.on_route,
        map=view,
    )


def map_view(
    plan: TripPlan,
    dist_m: float,
    next_index: int,
    *,
    behind_m: float = MAP_BEHIND_M,
    ahead_m: float = MAP_AHEAD_M,
    detour_m: tuple[float, float] | None = None,
) -> MapView:
    """The plan's path from `behind_m` before the bus to `ahead_m` after it, heading up, with
    the stops still to come (from `next_index`) that fall within it, and the part of the
    detour `detour_m` (from, to along the path) still ahead."""
    path = plan.path
    lat0, lon0, heading = path.point_at(dist_m)
    project = _projector(lat0, lon0, heading)
    lo = max(0.0, dist_m - behind_m)
    hi = min(path.length_m, dist_m + ahead_m)
    behind = tuple(project(lat, lon) for lat, lon in _section(path, lo, dist_m))
    ahead = tuple(project(lat, lon) for lat, lon in _section(path, dist_m, hi))
    detour: tuple[tuple[float, float], ...] = ()
    if detour_m is not None:
        d_lo, d_hi = max(detour_m[0], dist_m), min(detour_m[1], hi)
        if d_lo < d_hi:
            detour = tuple(project(lat, lon) for lat, lon in _section(path, d_lo, d_hi))
    stops = tuple(
        MapStop(*project(s.lat, s.lon), s.name, s.index == next_index)
        for s in plan.stops[next_index:]
        if lo <= s.dist_m <= hi
    )
    xs = [p[0] for p in (*behind, *ahead)] + [s.x for s in stops] + [0.0]
    ys = [p[1] for p in (*behind, *ahead)] + [s.y for s in stops] + [0.0]
    return MapView(behind, ahead, detour, stops, _extent(xs, ys), round(heading, 1))


def _projector(
    lat0: float, lon0: float, heading_deg: float
) -> Callable[[float, float], tuple[float, float]]:
    """Local flat projection (fine at city scale) turned so that `heading_deg` points up."""
    ky = math.pi / 180.0 * EARTH_RADIUS_M
    kx = math.cos(math.radians(lat0)) * ky
    sin_h, cos_h = math.sin(math.radians(heading_deg)), math.cos(math.radians(heading_deg))

    def project(lat: float, lon: float) -> tuple[float, float]:
        east, north = (lon - lon0) * kx, (lat - lat0) * ky
        forward = east * sin_h + north * cos_h
        right = east * cos_h - north * sin_h
        return round(right, 1), round(-forward, 1)

    return project


def _section(path: Polyline, lo: float, hi: float) -> list[tuple[float, float]]:
    """The path's points from distance `lo` to `hi`: both ends interpolated, vertices between
    (thinned evenly when there are too many)."""
    first = path.point_at(lo)[:2]
    last = path.point_at(hi)[:2]
    i, j = bisect_right(path.cum_m, lo), bisect_left(path.cum_m, hi)
    inner = list(path.points[i:j])
    if len(inner) > MAP_MAX_POINTS:
        step = len(inner) / MAP_MAX_POINTS
        inner = [inner[int(k * step)] for k in range(MAP_MAX_POINTS)]
    return [first, *inner, last]


def _extent(xs: list[float], ys: list[float]) -> tuple[float, float, float, float]:
    min_x, max_x = min(xs) - MAP_MARGIN_M, max(xs) + MAP_MARGIN_M
    min_y, max_y = min(ys) - MAP_MARGIN_M, max(ys) + MAP_MARGIN_M
    grow_x = max(0.0, MAP_MIN_SPAN_M - (max_x - min_x)) / 2
    grow_y = max(0.0, MAP_MIN_SPAN_M - (max_y - min_y)) / 2
    return (
        round(min_x - grow_x, 1),
        round(min_y - grow_y, 1),
        round(max_x - min_x + 2 * grow_x, 1),
        round(max_y - min_y + 2 * grow_y, 1),
    )
