"""Alarms at central: the detectors of central/fleet/alarms.py fed by ingest, stored, published.

Ingest calls `on_telemetry`, `on_events` and `on_reported` for what the buses send and `tick`
periodically; dispatchers' acknowledgements come through `acknowledge`
(central/service/dispatch.py).
Every change is stored (table `alarms`, one row per alarm, its `Alarm` document in `body`) and
queued for publishing, retained, on `busfleet/v1/alarms/{id}`: several dashboards see the same
alarms and each other's acknowledgements, and a dashboard started later gets them all at once.
A closed alarm stays retained for `keep_closed_s`, then its retained message is removed.

Backfilled data never raises an alarm: backfilled telemetry is ignored here, and a backfilled
event may only clear an alarm raised before it happened (the bus came back on route during the
outage). One open alarm per (bus, kind, subject): a partial unique index says so even when
several ingest workers share the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable

from central.fleet import alarms as rules
from central.fleet.alarms import (
    ACK,
    CLEAR,
    CLOSED,
    RAISE,
    AlarmError,
    AlarmParams,
    BusWatch,
    Change,
    resumed,
)
from central.fleet.health import HealthAlarms
from central.fleet.state import MAX_AHEAD_S, not_ahead
from central.store import alarms as alarm_db
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.errors import CodecError
from protocols.schemas import Alarm, EventBatch, FleetEntry, ReportedState, TelemetryBatch

__all__ = ["AlarmCenter", "Outgoing"]

log = logging.getLogger("busfleet.central.alarms")

Outgoing = tuple[str, bytes, bool]  # (topic, payload, retain)
Key = tuple[str, str, str]  # (bus, kind, subject)

TICK_S = 1.0  # the offline and sync checks walk the whole fleet: once a second is enough
SWEEP_S = 30.0  # closed alarms past keep_closed_s are looked for this often


class AlarmCenter:
    def __init__(self, store: CentralStore, params: AlarmParams | None = None) -> None:
        self.store = store
        self.params = params or AlarmParams()
        self.watch: dict[str, BusWatch] = {}
        self.changed: dict[str, Alarm] = {}  # to publish
        self.removed: set[str] = set()  # closed long enough: retained message to remove
        self.counters: dict[str, int] = {"raised": 0, "cleared": 0, "acked": 0}
        self._open: dict[Key, str] = {}  # open alarms -> id, so that most clears cost no query
        self._next_tick = 0.0
        self._next_sweep = 0.0
        self.health = HealthAlarms()  # disk, clock, restarts (central/fleet/health.py)
        # Told of every stored change (central/notify/notifier.py `offer`: never blocks).
        self.notify: Callable[[Alarm], None] | None = None
        self.resume()

    def resume(self) -> None:
        """Start again from the open alarms the store has (at start, and when an instance of a
        group takes the live role: central/service/leader.py); the detectors' other state
        builds up again from what comes."""
        self._open = dict(alarm_db.open_alarms(self.store))
        left: dict[str, list[str]] = {}  # left open by the central before: clearable
        for bus, kind, _ in self._open:
            left.setdefault(bus, []).append(kind)
        self.watch = {bus: resumed(kinds) for bus, kinds in left.items()}
        self.health.resume(left)

    # -- inputs -----------------------------------------------------------------------------
    def on_telemetry(self, bus: str, batch: TelemetryBatch, entry: FleetEntry, now: float) -> None:
        if batch.backfill:
            return  # history: stored, never alarming
        w = self.watch.get(bus) or BusWatch()
        # A record far from central's clock would hold the detectors' timers (door, speed).
        live = [r for r in batch.records if not_ahead(r.t, now)]
        w2, changes = rules.watch_telemetry(w, live, self.params)
        if w2 is not w:
            self.watch[bus] = w2
        self._apply(bus, changes, entry, now)

    def on_events(self, bus: str, batch: EventBatch, entry: FleetEntry, now: float) -> None:
        for event in batch.events:
            change = rules.from_event(event)
            if change is None:
                continue
            if change.t > now + MAX_AHEAD_S:
                # A bus clock far ahead: the alarm is raised now, not in ten years (a clear
                # "before" it could never come).
                change = dataclasses.replace(change, t=now)
            # The one exception: a driver's emergency pressed during an outage still reaches
            # the dispatchers (latched, with the time it was pressed) — it may still matter.
            if batch.backfill and change.what == RAISE and event.kind != "emergency":
                log.info("%s: backfilled %s at %.0f raises no alarm", bus, event.kind, event.t)
                continue
            # An event from before the alarm (backfilled, or sent twice) cannot clear it.
            self._apply(bus, [change], entry, now, only_after=True)
        if not batch.backfill:  # backfilled health is shown, never alarming
            self._apply(bus, self.health.on_events(bus, batch.events, now), entry, now)

    def on_reported(self, bus: str, r: ReportedState, entry: FleetEntry, now: float) -> None:
        w = self.watch.get(bus) or BusWatch()
        w2, changes = rules.watch_reported(
            w, r.counters, r.rejected_version, r.error, now, self.params
        )
        self.watch[bus] = w2
        self._apply(bus, changes, entry, now)

    def on_central(self, bus: str, change: Change, now: float) -> None:
        """An alarm central itself decides on, raised or cleared like a detector's (a rollout
        halted: central/service/rollout_task.py); without a position."""
        self._apply(bus, [change], FleetEntry(bus=bus, online=False), now)

    def tick(self, fleet: Iterable[FleetEntry], now: float | None = None) -> None:
        """Offline and out-of-sync checks over the fleet (at most once per TICK_S)."""
        now = time.time() if now is None else now
        if now >= self._next_tick:
            self._next_tick = now + TICK_S
            for entry in fleet:
                bus = entry.bus
                w = self.watch.get(bus) or BusWatch()
                w2, changes = rules.watch_tick(w, entry, now, self.params)
                if w2 is not w:
                    self.watch[bus] = w2
                if changes:
                    self._apply(bus, changes, entry, now)
            for bus, clears in self.health.tick(now).items():  # a bus stopped restarting
                for c in clears:
                    if (key := (bus, c.kind, c.subject)) in self._open:
                        self._clear(key, c, now, only_after=False)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_S
            self._sweep(now)

    def acknowledge(self, alarm_id: str, user: str, note: str, now: float | None = None) -> Alarm:
        """A dispatcher acknowledges an alarm; AlarmError if unknown or not acknowledgeable."""
        now = time.time() if now is None else now
        with self.store.transaction():
            alarm = self.get(alarm_id)
            if alarm is None:
                raise AlarmError(f"no alarm {alarm_id!r}")
            new = rules.step(alarm, ACK, now, user=user, note=note.strip()[:500])
            self._save(new)
        self.counters["acked"] += 1
        log.info("alarm %s (%s %s) acknowledged by %s", new.id, new.bus, new.kind, user)
        return new

    # -- reading ----------------------------------------------------------------------------
    def get(self, alarm_id: str) -> Alarm | None:
        body = alarm_db.alarm_body(self.store, alarm_id)
        return None if body is None else _decode(body)

    def alarms(
        self, *, bus: str | None = None, open_only: bool = False, limit: int = 200
    ) -> list[Alarm]:
        """The newest alarms first (of one bus; only those not closed)."""
        bodies = alarm_db.alarm_bodies(self.store, bus=bus, open_only=open_only, limit=limit)
        return [a for a in map(_decode, bodies) if a is not None]

    # -- publishing -------------------------------------------------------------------------
    def republish(self) -> None:
        """Queue every retained alarm again (after a reconnect: the broker may have lost them)."""
        for body in alarm_db.retained_bodies(self.store):
            alarm = _decode(body)
            if alarm is not None:
                self.changed[alarm.id] = alarm

    def take_outgoing(self) -> list[Outgoing]:
        """Alarm documents to publish (retained) and retained ones to remove, in that order."""
        out: list[Outgoing] = [
            (topics.alarm(a.id), codec.encode(a), True) for a in self.changed.values()
        ]
        out += [(topics.alarm(i), b"", True) for i in sorted(self.removed)]
        self.changed.clear()
        self.removed.clear()
        return out

    # -- inside -----------------------------------------------------------------------------
    def _apply(
        self,
        bus: str,
        changes: Iterable[Change],
        entry: FleetEntry,
        now: float,
        *,
        only_after: bool = False,
    ) -> None:
        for c in changes:
            key = (bus, c.kind, c.subject)
            if c.what == RAISE:
                self._raise(key, c, entry, now)
            elif key in self._open:
                self._clear(key, c, now, only_after=only_after)

    def _raise(self, key: Key, c: Change, entry: FleetEntry, now: float) -> None:
        bus, kind, subject = key
        with self.store.transaction():
            row = alarm_db.open_alarm(self.store, key)
            current = None if row is None else _decode(row[1])
            if row is None and alarm_db.alarm_seen(self.store, key, c.t):
                return  # an event sent twice (a lost acknowledgement): raised already
            if current is not None:
                new = rules.step(current, RAISE, c.t)
                if new is not current:
                    self._save(new)
                self._open[key] = current.id
                return
            alarm = self._new_alarm(key, c, entry, now, row[0] if row is not None else None)
            if row is not None:
                # An open alarm whose stored document does not read back (written before its
                # position was checked): this one takes its place, under its id.
                alarm_db.replace_alarm(self.store, row[0], alarm, codec.encode(alarm).decode())
                self.counters["repaired"] = self.counters.get("repaired", 0) + 1
                self.changed[alarm.id] = alarm
            elif not self._save(alarm, new=True):
                # Another worker raised it between our read and our write: take theirs.
                raced = alarm_db.open_alarm(self.store, key)
                if raced is not None:
                    self._open[key] = raced[0]
                return
        self._open[key] = alarm.id
        self.counters["raised"] += 1
        log.warning("alarm %s: %s %s %s %s", alarm.id, bus, kind, subject, c.text)

    def _new_alarm(
        self, key: Key, c: Change, entry: FleetEntry, now: float, alarm_id: str | None
    ) -> Alarm:
        bus, kind, subject = key
        kind_info = rules.info(kind)
        lat, lon = (c.lat, c.lon) if c.lat is not None else (entry.lat, entry.lon)
        where = lat is not None and lon is not None
        return Alarm(
            id=alarm_id or f"{int(now):x}-{uuid.uuid4().hex[:8]}",
            bus=bus,
            kind=kind,
            subject=subject,
            severity=c.severity or kind_info.severity,
            state=rules.ACTIVE,
            raised_t=c.t,
            t=now,
            text=c.text,
            lat=lat if where else None,
            lon=lon if where else None,
        )

    def _clear(self, key: Key, c: Change, now: float, *, only_after: bool) -> None:
        with self.store.transaction():
            alarm = self.get(self._open[key])
            if alarm is None or alarm.state == CLOSED:
                self._open.pop(key, None)
                return
            if only_after and c.t < alarm.raised_t:
                return  # backfilled history from before the alarm: it says nothing about now
            self._save(rules.step(alarm, CLEAR, now))
        self.counters["cleared"] += 1

    def _save(self, alarm: Alarm, *, new: bool = False) -> bool:
        """Store and queue the alarm; False (nothing done) if it is new and its key is open."""
        body = codec.encode(alarm).decode()
        if new:
            if not alarm_db.add_alarm(self.store, alarm, body):
                return False
        else:
            alarm_db.update_alarm(self.store, alarm, body)
        if alarm.state == CLOSED:
            self._open.pop((alarm.bus, alarm.kind, alarm.subject), None)
        self.changed[alarm.id] = alarm
        if self.notify is not None:
            self.notify(alarm)
        return True

    def _sweep(self, now: float) -> None:
        cutoff = now - self.params.keep_closed_s
        ids = alarm_db.closed_retained(self.store, cutoff)
        if not ids:
            return
        with self.store.transaction():
            alarm_db.unretain(self.store, ids)
        self.removed.update(ids)
        for i in ids:
            self.changed.pop(i, None)


def _decode(body: str | bytes) -> Alarm | None:
    data = body.encode() if isinstance(body, str) else body
    try:
        return codec.decode(Alarm, data)
    except CodecError as exc:
        # Stored before event positions were checked (issue 13): a latitude of 999 hid the
        # alarm from every dashboard. Without its position it is still an alarm.
        with contextlib.suppress(CodecError):
            raw = codec.decode_json(data)
            if isinstance(raw, dict) and ("lat" in raw or "lon" in raw):
                raw.pop("lat", None)
                raw.pop("lon", None)
                return codec.decode(Alarm, codec.encode_json(raw).encode())
        log.error("unreadable alarm in the database: %s", exc)
        return None
