"""Ingest: every message from the buses goes through `Ingest.handle`, transport-agnostic.

Bad input never raises out of here: an unknown topic, a payload that does not parse or
validate (every number a bus sends is bounded by its schema), or a payload naming another bus
than its topic is counted and logged (rate-limited). A message that still makes its handler
fail is counted (`errors`) and logged with its traceback, and the others of its batch are
stored: one authenticated bus must not be able to stop central, least of all with a retained
message that would stop it again at every restart. A failing database (SQLite's
OperationalError: disk full, I/O error) is not the message's fault: the batch is rolled back
and the error raised, no receipt goes out, and the buses send it all again.

Times out of the plausible window around central's clock (central/fleet/state.py) are
stored, counted (`implausible_time`) and never move live state. Receipts are cut into
several `Stored` messages of at most RECEIPT_RANGES ranges each, so that a bus with gapped
sequence numbers cannot make one exceed the broker's packet limit.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from central.fleet import state as fleet
from central.service.alarm_center import AlarmCenter
from central.store import retention as retention_db
from central.store.backend import is_store_failure
from central.store.db import CentralStore
from central.store.telemetry import record_row
from protocols import codec, compact, topics
from protocols.errors import ProtocolError
from protocols.ranges import ranges
from protocols.schemas import (
    DesiredState,
    EventBatch,
    FleetEntry,
    Presence,
    ReportedState,
    Scalar,
    Stored,
    TelemetryBatch,
)

log = logging.getLogger("busfleet.central.ingest")

# Ranges per receipt: about 35 bytes each in JSON at the largest sequence numbers, so a
# receipt stays near 70 kB, under the agent's MAX_PAYLOAD and far under the broker's 1 MB.
RECEIPT_RANGES = 2000
TOPIC_CACHE = 100_000  # parsed topics kept: a few per bus; a flood of made-up ones clears it


class Ingest:
    def __init__(self, store: CentralStore, offline_after_s: float = 30.0) -> None:
        self.store = store
        self.offline_after_s = offline_after_s
        self.buses: dict[str, fleet.BusState] = {}
        self.dirty: set[str] = set()  # buses whose fleet entry changed since last publish
        self.counters: collections.Counter[str] = collections.Counter()
        # Sequence numbers stored since the last receipts went out, per bus; and those of the
        # transaction in progress, which join them once it committed.
        self.receipts: dict[str, list[int]] = collections.defaultdict(list)
        self._receipted: dict[str, float] = {}  # when each bus last had one (monotonic)
        self._pending: dict[str, list[int]] = collections.defaultdict(list)
        self.offline_after: dict[str, float] = {}  # per-bus timeout announced in its birth
        self._last_warning = 0.0
        self._topics: dict[str, topics.Topic] = {}  # parsed topics (`_parse`)
        self.alarms = AlarmCenter(store)  # fed below; backfilled data never raises an alarm
        # Whether storing records also feeds them to fleet state and alarms. In a group of
        # instances (central/service/service.py) it does not: each stores its share, and the
        # leader feeds the full streams to its live view through `observe_many`.
        self.live = True
        self.load_fleet()

    def load_fleet(self) -> None:
        """Fleet entries as the store has them (at start, and when taking the live role)."""
        for row in self.store.buses():
            if row["body"]:
                try:
                    entry = codec.decode(FleetEntry, row["body"].encode())
                except ProtocolError as exc:  # rebuilt from the bus's next messages
                    log.error("unreadable fleet entry of %s: %s", row["bus"], exc)
                    continue
                self.buses[row["bus"]] = fleet.BusState(entry=entry, session=row["session"])

    def observe_many(self, messages: Iterable[tuple[str, bytes]], now: float | None = None) -> None:
        """The live view only: records another instance of the group stores (or this one, from
        its share) move fleet state and alarms here, and nothing is stored or counted. A
        message that does not parse is skipped: whoever stores it counts it. Which records are
        new is the storing instance's knowledge: a fleet entry's `records` counts here every
        record seen live (one sent again counts again; the telemetry table is the exact
        count)."""
        now = time.time() if now is None else now
        for topic, payload in messages:
            try:
                parsed = self._parse(topic)
                bus = parsed.bus_id
                if bus is None:
                    continue
                if parsed.kind is topics.Kind.TELEMETRY:
                    batch = compact.decode_batch(payload)
                    self._check_bus(bus, batch.bus)
                    self._live_telemetry(bus, batch, len(batch.records), now)
                elif parsed.kind in (topics.Kind.EVENTS, topics.Kind.COMMAND_ACK):
                    events = codec.decode(EventBatch, payload)
                    self._check_bus(bus, events.bus)
                    self._live_events(bus, events, now)
            except ProtocolError:
                continue
            except Exception as exc:
                if is_store_failure(exc):  # an alarm's write failed: not the message's fault
                    raise
                self.counters["errors"] += 1
                log.exception("failed on a live message on %s (%d bytes)", topic, len(payload))

    def handle(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """Handle one message; what it stores is committed when this returns."""
        self.handle_many([(topic, payload)], now)

    def handle_many(self, messages: Iterable[tuple[str, bytes]], now: float | None = None) -> None:
        """Handle messages in order, storing all of them in one transaction (group commit).

        Receipts for their records become available to `take_receipts` only once that
        transaction committed: a bus never forgets a record that central could still lose.
        """
        now = time.time() if now is None else now
        self._pending.clear()
        with self.store.transaction():
            for topic, payload in messages:
                try:
                    self._handle(topic, payload, now)
                except Exception as exc:
                    if is_store_failure(exc):  # the database, not the message: roll it all back
                        raise
                    # a bug that one message finds must not stop central
                    self.counters["errors"] += 1
                    log.exception("failed on a message on %s (%d bytes)", topic, len(payload))
        for bus, seqs in self._pending.items():
            self.receipts[bus].extend(seqs)
        self._pending.clear()

    def _parse(self, topic: str) -> topics.Topic:
        """`topics.parse`, remembered: thousands of buses send on the same few topics each."""
        parsed = self._topics.get(topic)
        if parsed is None:
            parsed = topics.parse(topic)  # TopicError for a bad one, never remembered
            if len(self._topics) >= TOPIC_CACHE:
                self._topics.clear()
            self._topics[topic] = parsed
        return parsed

    def _handle(self, topic: str, payload: bytes, now: float) -> None:
        self.counters["messages"] += 1
        try:
            parsed = self._parse(topic)
            bus = parsed.bus_id
            if bus is None:
                return
            if parsed.kind is topics.Kind.TELEMETRY:
                self._telemetry(bus, compact.decode_batch(payload), now)
            elif parsed.kind is topics.Kind.PRESENCE:
                self._presence(bus, codec.decode(Presence, payload), now)
            elif parsed.kind is topics.Kind.REPORTED:
                self._reported(bus, payload, codec.decode(ReportedState, payload), now)
            elif parsed.kind in (topics.Kind.EVENTS, topics.Kind.COMMAND_ACK):
                self._events(bus, codec.decode(EventBatch, payload), now)
            elif parsed.kind is topics.Kind.DESIRED:  # another worker of a group wrote it
                desired = codec.decode(DesiredState, payload)
                self._check_bus(bus, desired.bus)
                self.on_desired(bus, desired)
            else:
                return
        except ProtocolError as exc:
            self.reject(type(exc).__name__, f"{topic}: {exc}")

    def on_desired(self, bus: str, desired: DesiredState) -> None:
        """The bus's desired document is `desired` now (told by whoever wrote it)."""
        self._set(bus, fleet.on_desired(self._state(bus), desired))

    def reject(self, reason: str, detail: str) -> None:
        """Count a message refused for `reason` and log it (rate-limited)."""
        self.counters["rejected"] += 1
        self.counters[f"rejected_{reason}"] += 1
        self._warn(f"rejected ({self.counters['rejected']} so far): {detail}")

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warning > 1.0:  # a flood of garbage must not flood the log
            self._last_warning = now
            log.warning("%s", text[:300])

    def _state(self, bus: str) -> fleet.BusState:
        state = self.buses.get(bus)
        return state if state is not None else fleet.new_bus(bus)

    def _set(self, bus: str, state: fleet.BusState) -> None:
        self.buses[bus] = state
        self.dirty.add(bus)

    def _check_bus(self, bus: str, claimed: str) -> None:
        if claimed != bus:
            raise BusMismatch(f"payload names bus {claimed!r} on the topic of {bus!r}")

    def _telemetry(self, bus: str, batch: TelemetryBatch, now: float) -> None:
        self._check_bus(bus, batch.bus)
        rows = [record_row(bus, r, batch.backfill, now) for r in batch.records]
        self._check_times(bus, (r.t for r in batch.records), now)
        new = self.store.add_records(rows)
        self._pending[bus].extend(r.seq for r in batch.records)
        self.counters["records"] += new
        self._count_not_stored("telemetry", rows, new)
        if self.live:
            self._live_telemetry(bus, batch, new, now)

    def _live_telemetry(self, bus: str, batch: TelemetryBatch, new: int, now: float) -> None:
        self._set(bus, fleet.on_telemetry(self._state(bus), batch, new, now))
        self.alarms.on_telemetry(bus, batch, self.buses[bus].entry, now)

    def _events(self, bus: str, batch: EventBatch, now: float) -> None:
        self._check_bus(bus, batch.bus)
        rows = [
            (
                bus,
                e.seq,
                e.t,
                e.kind,
                e.severity,
                msgspec.json.encode(e.data).decode(),
                int(batch.backfill),
                now,
            )
            for e in batch.events
        ]
        self._check_times(bus, (e.t for e in batch.events), now)
        new = self.store.add_events(rows)
        self._pending[bus].extend(e.seq for e in batch.events)
        self.counters["events"] += new
        self._count_not_stored("events", rows, new)
        for e in batch.events:
            if e.kind == "cmd_ack":
                self._command_answer(bus, e.data, e.t)
        if self.live:
            self._live_events(bus, batch, now)

    def _live_events(self, bus: str, batch: EventBatch, now: float) -> None:
        for e in batch.events:
            if e.kind == "portal_stats" and not batch.backfill:
                self._set(bus, fleet.on_portal_stats(self._state(bus), e.data.get("clients")))
        self.alarms.on_events(bus, batch, self._state(bus).entry, now)

    def _count_not_stored(self, table: str, rows: list[tuple[Any, ...]], new: int) -> None:
        """Rows not stored: duplicates of stored ones, or sent again after a purge (retention)."""
        dropped = len(rows) - new
        resent = retention_db.purged_resends(self.store, table, rows) if dropped else 0
        self.counters["duplicates"] += dropped - resent
        if resent:
            self.counters["purged_resends"] += resent

    def _check_times(self, bus: str, times: Iterable[float], now: float) -> None:
        """Count times the bus's clock cannot have meant (stored all the same)."""
        bad = sum(1 for t in times if not fleet.plausible_time(t, now))
        if bad:
            self.counters["implausible_time"] += bad
            self._warn(f"{bus}: {bad} times far from central's clock")

    def _command_answer(self, bus: str, data: dict[str, Scalar], t: float) -> None:
        cmd_id, result, reason = data.get("id"), data.get("result"), data.get("reason")
        if not isinstance(cmd_id, str) or result not in ("ok", "failed", "expired"):
            self.reject("BadAnswer", f"{bus}: command answer without id or result: {data}")
            return
        if self.store.answer_command(
            bus, cmd_id, str(result), None if reason is None else str(reason), t
        ):
            self.counters["command_answers"] += 1
        else:  # answered already (a resend), expired, or not a command sent to this bus
            self.counters["command_answers_unmatched"] += 1

    def take_receipts(self, now: float | None = None, hold_s: float = 0.0) -> list[Stored]:
        """Receipts for what was stored since the last call: per bus, as many as it takes
        for each to carry at most RECEIPT_RANGES ranges.

        With `hold_s`, a bus that had a receipt less than `hold_s` ago (by `now`, monotonic)
        gets none yet: what it has stored since waits and goes in one receipt when the time
        is up (`receipts_due_in`). A bus sending faster than that (a backlog after an
        outage) gets one receipt per `hold_s` instead of one per message; one at 1 Hz is not
        held at all."""
        out = []
        at = time.monotonic() if now is None else now
        for bus in list(self.receipts):
            if hold_s:
                if self._receipted.get(bus, -1e300) > at - hold_s:
                    continue
                self._receipted[bus] = at
            spans = ranges(self.receipts.pop(bus))
            for i in range(0, len(spans), RECEIPT_RANGES):
                out.append(Stored(bus=bus, ranges=spans[i : i + RECEIPT_RANGES]))
        return out

    def receipts_due_in(self, now: float, hold_s: float) -> float | None:
        """Seconds until the earliest held receipt may go (0 if one may go now); None if none
        is waiting."""
        if not self.receipts:
            return None
        first = min(self._receipted.get(bus, -1e300) for bus in self.receipts)
        return max(0.0, first + hold_s - now)

    def _presence(self, bus: str, p: Presence, now: float) -> None:
        self._check_bus(bus, p.bus)
        if p.offline_after_s is not None:
            self.offline_after[bus] = p.offline_after_s
        state = fleet.on_presence(self._state(bus), p, now)
        if state is None:
            self.counters["stale_presence"] += 1
            log.info("ignored stale presence of %s (session %d)", bus, p.session)
            return
        log.info("%s %s (session %d)", bus, "online" if p.online else "offline", p.session)
        self._set(bus, state)

    def _reported(self, bus: str, payload: bytes, r: ReportedState, now: float) -> None:
        self._check_bus(bus, r.bus)
        self.store.save_reported(bus, r.version, payload)
        self._set(bus, fleet.on_reported(self._state(bus), r, now))
        self.alarms.on_reported(bus, r, self.buses[bus].entry, now)

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for bus, state in self.buses.items():
            timeout = self.offline_after.get(bus, self.offline_after_s)
            changed = fleet.on_tick(state, now, timeout)
            if changed is not None:
                log.info("%s offline: silent for %.0f s", bus, timeout)
                self._set(bus, changed)
        self.alarms.tick((s.entry for s in self.buses.values()), now)

    def take_dirty(self) -> list[FleetEntry]:
        """Fleet entries changed since the last call; also persisted, so a restart keeps them."""
        return [entry for entry, _payload in self.take_dirty_encoded()]

    def take_dirty_encoded(self) -> list[tuple[FleetEntry, bytes]]:
        """`take_dirty` with each entry's JSON, encoded once for the store and the broker."""
        encoded = [(e := self.buses[b].entry, codec.encode(e)) for b in sorted(self.dirty)]
        if not encoded:  # no write at all: a long import may hold the write lock
            return []
        self.store.save_buses(
            (e.bus, e.online, self.buses[e.bus].session, e.last_seen, payload.decode())
            for e, payload in encoded
        )
        self.dirty.clear()
        return encoded


class BusMismatch(ProtocolError):
    """A payload that claims to come from another bus than its topic says."""
