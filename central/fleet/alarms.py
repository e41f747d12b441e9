"""Central's alarms, pure: what raises and clears them, and their lifecycle as a table.

Lifecycle (after ISA-18.2's alarm states): an alarm is raised *active*; a dispatcher's
acknowledgement makes it *acked*; when its condition ends it is *cleared* (if nobody has
acknowledged it yet: it stays on the dashboards until someone does) or *closed* (if
acknowledged). A cleared alarm that comes back before anyone acknowledged it is the same alarm,
active again; after it closed, the condition raises a new one. *Latched* kinds (the driver's
emergency alarm, dropped data, other events of severity >= 3) have no end the bus could report:
they close when acknowledged.

Detectors (`watch_*`) turn what a bus reports into `Change`s (raise or clear an alarm of a kind
and subject on a bus). Conditions sampled from telemetry (door open while moving, overspeed)
must hold for a while to raise and be gone for a while to clear (`Hold`), so one noisy sample
neither raises nor clears. Nothing here is ever fed backfilled data to raise an alarm: the
caller (central/service/alarm_center.py) drops backfilled telemetry and lets backfilled events only
clear alarms they are newer than.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

import msgspec

from central.errors import Refused
from protocols.schemas import Alarm, Event, FleetEntry, Scalar, TelemetryRecord

__all__ = [
    "ACK",
    "ACKED",
    "ACTIVE",
    "CLEAR",
    "CLEARED",
    "CLOSED",
    "KINDS",
    "RAISE",
    "TRANSITIONS",
    "AlarmError",
    "AlarmParams",
    "BusWatch",
    "Change",
    "Hold",
    "KindInfo",
    "from_event",
    "hold_step",
    "resumed",
    "step",
    "timetable_start",
    "watch_reported",
    "watch_telemetry",
    "watch_tick",
]

ACTIVE: Final = "active"
ACKED: Final = "acked"
CLEARED: Final = "cleared"
CLOSED: Final = "closed"

RAISE: Final = "raise"
CLEAR: Final = "clear"
ACK: Final = "ack"

# (state, input) -> next state. A pair that is missing is refused (AlarmError): acknowledging
# twice, anything on a closed alarm.
TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    (ACTIVE, RAISE): ACTIVE,
    (ACTIVE, ACK): ACKED,
    (ACTIVE, CLEAR): CLEARED,
    (ACKED, RAISE): ACKED,
    (ACKED, CLEAR): CLOSED,
    (CLEARED, RAISE): ACTIVE,
    (CLEARED, ACK): CLOSED,
    (CLEARED, CLEAR): CLEARED,
}


class AlarmError(Refused):
    """An alarm transition the lifecycle does not allow (the text says why, for people)."""


@dataclass(frozen=True, slots=True)
class KindInfo:
    severity: int
    title: str
    latched: bool = False  # no clearing condition: closed by its acknowledgement


KINDS: Final[dict[str, KindInfo]] = {
    "emergency": KindInfo(4, "driver's emergency alarm", latched=True),
    "off_route": KindInfo(3, "off route"),
    "dtc": KindInfo(3, "DM1 fault"),
    "door_open_moving": KindInfo(3, "door open while moving"),
    "overspeed": KindInfo(3, "overspeed"),
    "state_rejected": KindInfo(3, "bus refused its desired state"),
    "offline": KindInfo(2, "offline"),
    "gps_lost": KindInfo(2, "GPS lost"),
    "backlog": KindInfo(2, "outbox backlog growing"),
    "out_of_sync": KindInfo(2, "out of sync with its desired state"),
    "timetable_out_of_date": KindInfo(2, "runs another timetable than it should"),
    "data_dropped": KindInfo(2, "outbox over budget: data dropped", latched=True),
    # fleet health (central/fleet/health.py)
    "disk_low": KindInfo(2, "disk about to fill"),
    "clock_unsynced": KindInfo(2, "clock not synchronised"),
    "restarting": KindInfo(3, "agent keeps restarting"),
}
GENERIC = KindInfo(3, "alarm from the bus", latched=True)

# Bus event kind -> (input, alarm kind). Other events of severity >= 3 raise a latched alarm
# of their own kind.
EVENT_RULES: Final[dict[str, tuple[str, str]]] = {
    "off_route": (RAISE, "off_route"),
    "back_on_route": (CLEAR, "off_route"),
    "gps_lost": (RAISE, "gps_lost"),
    "gps_regained": (CLEAR, "gps_lost"),
    "dtc_new": (RAISE, "dtc"),
    "dtc_cleared": (CLEAR, "dtc"),
    "emergency": (RAISE, "emergency"),
    "dropped": (RAISE, "data_dropped"),
}


def info(kind: str) -> KindInfo:
    return KINDS.get(kind, GENERIC)


@dataclass(frozen=True, slots=True)
class AlarmParams:
    """Thresholds; central.toml sets the first three (`alarm_overspeed_kmh`,
    `alarm_sync_after_s`, `alarm_timetable_late_s`)."""

    overspeed_kmh: float = 70.0
    sync_after_s: float = 120.0  # online and not running its desired version for this long
    # Not running its desired timetable this long after the version's valid_from (or, for one
    # published "at once", after central first saw it desired): out of date, online or not.
    timetable_late_s: float = 600.0
    overspeed_s: float = 5.0  # over the limit this long raises
    door_speed_kmh: float = 5.0  # a door open above this speed counts as "while moving"
    door_s: float = 2.0
    release_s: float = 10.0  # a sampled condition gone this long clears its alarm
    backlog_min: int = 300  # records waiting in the bus's outbox before growth is alarming
    backlog_reports: int = 3  # consecutive reports, each with more waiting than the last
    keep_closed_s: float = 3600.0  # closed alarms stay on the dashboards this long


@dataclass(frozen=True, slots=True)
class Change:
    """A detector's decision: raise or clear the alarm of `kind`/`subject` on a bus at `t`."""

    what: str  # RAISE or CLEAR
    kind: str
    t: float
    subject: str = ""
    severity: int = 0  # 0: the kind's
    text: str = ""
    lat: float | None = None
    lon: float | None = None


def step(
    alarm: Alarm, what: str, now: float, *, user: str | None = None, note: str | None = None
) -> Alarm:
    """The alarm after input `what` (RAISE, CLEAR or ACK); AlarmError if not allowed."""
    nxt = TRANSITIONS.get((alarm.state, what))
    if nxt is None:
        if alarm.state == CLOSED:
            raise AlarmError(f"alarm {alarm.id} is closed")
        by = f" by {alarm.acked_by}" if alarm.acked_by else ""
        raise AlarmError(f"alarm {alarm.id} is already acknowledged{by}")
    if what == ACK:
        acked = msgspec.structs.replace(
            alarm, state=nxt, t=now, acked_by=user or "", ack_note=note or "", ack_t=now
        )
        return step(acked, CLEAR, now) if info(alarm.kind).latched and nxt == ACKED else acked
    if nxt == alarm.state:
        return alarm
    cleared_t = now if what == CLEAR else None  # raised again: no longer over
    return msgspec.structs.replace(alarm, state=nxt, t=now, cleared_t=cleared_t)


def _num(value: Scalar) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def from_event(event: Event) -> Change | None:
    """The alarm change a bus event means, if any."""
    rule = EVENT_RULES.get(event.kind)
    if rule is None:
        if event.severity < 3:
            return None
        rule = (RAISE, event.kind)
    what, kind = rule
    data = event.data
    subject = ""
    if kind == "dtc":
        subject = f"{data.get('spn', '?')}/{data.get('fmi', '?')}"
    text = data.get("text") or data.get("reason") or ""
    severity = event.severity if kind not in KINDS else 0
    lat, lon = _num(data.get("lat", None)), _num(data.get("lon", None))
    if lat is None or lon is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        # A position that is not one (latitude 999) is dropped, never the alarm: the alarm
        # is raised and shown without it (or with the bus's last known position).
        lat = lon = None
    return Change(
        what,
        kind,
        event.t,
        subject=subject,
        severity=min(max(severity, 0), 4),
        text=str(text)[:200],
        lat=lat,
        lon=lon,
    )


@dataclass(frozen=True, slots=True)
class Hold:
    """A sampled condition: true for `on_s` raises, then false for `off_s` clears."""

    since: float | None = None  # when the condition last changed against the alarm's state
    raised: bool = False


def hold_step(
    h: Hold, condition: bool, t: float, on_s: float, off_s: float
) -> tuple[Hold, str | None]:
    """Feed one sample; returns the new hold and RAISE, CLEAR or None."""
    if condition != h.raised:  # heading for a change
        since = h.since if h.since is not None else t
        if t - since >= (on_s if condition else off_s):
            return Hold(None, condition), RAISE if condition else CLEAR
        return Hold(since, h.raised), None
    return (h if h.since is None else Hold(None, h.raised)), None


@dataclass(frozen=True, slots=True)
class BusWatch:
    """What the detectors remember of one bus."""

    online: bool | None = None  # as last seen by the tick; None: not seen yet
    door: Hold = Hold()
    speed: Hold = Hold()
    unsync_since: float | None = None
    out_of_sync: bool = False
    rejected: bool = False
    backlog: tuple[int, ...] = ()  # the outbox counts of the last reports that differed
    backlog_alarm: bool = False
    # The desired timetable version and when central first saw it desired (by its clock).
    timetable_seen: tuple[int, float] | None = None
    timetable_late: bool = False


def resumed(kinds: Iterable[str]) -> BusWatch:
    """The watch of a bus whose alarms of `kinds` a central before this one left open: each
    condition starts as raised, so that it clears when it ends (and is not raised twice).
    Kinds cleared by events or latched need nothing here."""
    open_ = set(kinds)
    return BusWatch(
        online=False if "offline" in open_ else None,
        door=Hold(None, "door_open_moving" in open_),
        speed=Hold(None, "overspeed" in open_),
        out_of_sync="out_of_sync" in open_,
        rejected="state_rejected" in open_,
        backlog_alarm="backlog" in open_,
        timetable_late="timetable_out_of_date" in open_,
    )


def _speed_kmh(r: TelemetryRecord) -> float | None:
    if r.veh is not None and r.veh.speed_kmh is not None:
        return r.veh.speed_kmh  # the wheel speed: what a tachograph would say
    if r.pos is not None and r.pos.speed is not None and not r.pos.estimated:
        return r.pos.speed * 3.6
    return None


def watch_telemetry(
    w: BusWatch, records: Iterable[TelemetryRecord], p: AlarmParams
) -> tuple[BusWatch, list[Change]]:
    """Live records in time order: door open while moving, overspeed."""
    changes: list[Change] = []
    door, speed = w.door, w.speed
    for r in records:
        kmh = _speed_kmh(r)
        if kmh is None:
            continue
        lat = r.pos.lat if r.pos else None
        lon = r.pos.lon if r.pos else None
        doors = r.veh.doors_open if r.veh else None
        if doors is not None:
            door, what = hold_step(
                door, doors and kmh >= p.door_speed_kmh, r.t, p.door_s, p.release_s
            )
            if what:
                text = f"{kmh:.0f} km/h with a door open" if what == RAISE else ""
                changes.append(Change(what, "door_open_moving", r.t, text=text, lat=lat, lon=lon))
        speed, what = hold_step(speed, kmh > p.overspeed_kmh, r.t, p.overspeed_s, p.release_s)
        if what:
            text = f"{kmh:.0f} km/h, limit {p.overspeed_kmh:.0f}" if what == RAISE else ""
            changes.append(Change(what, "overspeed", r.t, text=text, lat=lat, lon=lon))
    if door is w.door and speed is w.speed:
        return w, changes
    return replace(w, door=door, speed=speed), changes


def watch_reported(
    w: BusWatch,
    counters: dict[str, int],
    rejected_version: int | None,
    error: str | None,
    t: float,
    p: AlarmParams,
) -> tuple[BusWatch, list[Change]]:
    """A reported state: the outbox backlog growing report after report; a refused state."""
    changes: list[Change] = []
    backlog = w.backlog
    waiting = counters.get("outbox")
    if waiting is not None and (not backlog or waiting != backlog[-1]):
        backlog = (*backlog, waiting)[-p.backlog_reports :]
    growing = (
        len(backlog) == p.backlog_reports
        and backlog[-1] >= p.backlog_min
        and all(a < b for a, b in itertools.pairwise(backlog))
    )
    alarm = w.backlog_alarm
    if growing and not alarm:
        alarm = True
        changes.append(Change(RAISE, "backlog", t, text=f"{backlog[-1]} records waiting on board"))
    elif (
        alarm
        and backlog
        and (backlog[-1] < p.backlog_min or (len(backlog) > 1 and backlog[-1] < backlog[-2]))
    ):
        alarm = False
        changes.append(Change(CLEAR, "backlog", t))
    rejected = rejected_version is not None
    if rejected and not w.rejected:
        text = f"version {rejected_version}: {error or 'no reason given'}"
        changes.append(Change(RAISE, "state_rejected", t, text=text[:200]))
    elif w.rejected and not rejected:
        changes.append(Change(CLEAR, "state_rejected", t))
    return replace(w, backlog=backlog, backlog_alarm=alarm, rejected=rejected), changes


def watch_tick(
    w: BusWatch, entry: FleetEntry, now: float, p: AlarmParams
) -> tuple[BusWatch, list[Change]]:
    """Periodic: went offline (its per-bus timeout or its last will), out of sync too long."""
    changes: list[Change] = []
    online = entry.online
    if w.online is True and not online:
        changes.append(Change(RAISE, "offline", now, lat=entry.lat, lon=entry.lon))
    elif online and w.online is False:
        changes.append(Change(CLEAR, "offline", now))
    unsync_since, out = w.unsync_since, w.out_of_sync
    behind = entry.desired_version > entry.reported_version
    if not behind:
        unsync_since = None
        if out:
            out = False
            changes.append(Change(CLEAR, "out_of_sync", now))
    elif not online:
        unsync_since = None  # an offline bus cannot catch up; its offline alarm says so
    elif unsync_since is None:
        unsync_since = now
    elif not out and now - unsync_since >= p.sync_after_s:
        out = True
        text = f"runs v{entry.reported_version}, desired v{entry.desired_version}"
        changes.append(Change(RAISE, "out_of_sync", now, text=text, lat=entry.lat, lon=entry.lon))
    seen, late = _timetable(w, entry, now, p, changes)
    if (online, unsync_since, out, seen, late) == (
        w.online,
        w.unsync_since,
        w.out_of_sync,
        w.timetable_seen,
        w.timetable_late,
    ):
        return w, changes
    return replace(
        w,
        online=online,
        unsync_since=unsync_since,
        out_of_sync=out,
        timetable_seen=seen,
        timetable_late=late,
    ), changes


def timetable_start(entry: FleetEntry, seen_t: float) -> float:
    """When the bus should switch to its desired timetable (central's clock): the version's
    valid_from, or when central first saw it desired (`seen_t`) if it is valid at once."""
    return entry.timetable_valid_from if entry.timetable_valid_from is not None else seen_t


def _timetable(
    w: BusWatch, entry: FleetEntry, now: float, p: AlarmParams, changes: list[Change]
) -> tuple[tuple[int, float] | None, bool]:
    """Out of date: the bus runs another timetable than its desired one `timetable_late_s`
    after it should have switched.

    Judged by central's clock on what the bus last reported, so a bus offline for days is out
    of date too. The alarm follows the condition: it clears when the bus runs the desired
    version, and also when no timetable is desired any more or another version is desired
    whose time has not come yet (raised again if that passes too). A central restarted
    forgets when it first saw a version valid at once: it counts from its start again (and
    starts from `timetable_late` for a bus whose alarm it left open, so that it can clear).
    """
    want = entry.timetable_desired
    seen: tuple[int, float] | None = None
    late = False
    if want is not None:
        kept = w.timetable_seen
        seen = kept if kept is not None and kept[0] == want else (want, now)
        start = timetable_start(entry, seen[1])
        late = entry.timetable != want and now >= start + p.timetable_late_s
        if late and not w.timetable_late:
            text = f"runs {_running(entry)}, should run v{want} since {_utc(start)}"
            kind, lat, lon = "timetable_out_of_date", entry.lat, entry.lon
            changes.append(Change(RAISE, kind, now, text=text, lat=lat, lon=lon))
    if w.timetable_late and not late:
        changes.append(Change(CLEAR, "timetable_out_of_date", now))
    return seen, late


def _running(entry: FleetEntry) -> str:
    """What the bus reports it runs, for an alarm's text."""
    if entry.timetable is not None:
        return f"v{entry.timetable}"
    return "a local bootstrap feed" if entry.timetable_source == "local" else "no timetable"


def _utc(t: float) -> str:
    try:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return f"{t:.0f}"
