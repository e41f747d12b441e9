"""The fleet link: one MQTT connection to city hall, re-entered in a loop after every outage.

On each connection the bus announces itself (retained birth with a fresh session number,
last will saying offline), subscribes to its desired state, commands and central's receipts,
republishes its reported state and sends the outbox: alarms first, then events, then
telemetry, each in sequence order. A record leaves the outbox only when central's receipt
says it is stored; records without a receipt after `receipt_timeout_s` are sent again
(central ignores the duplicates). The session is persistent (MQTT 5 session expiry), so
commands and receipts sent while the bus is away wait for it at the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from itertools import groupby
from typing import TypeVar

import aiomqtt
import msgspec

from onboard.backoff import Backoff
from onboard.config import AgentConfig
from onboard.link.outbox import Outbox, Pending
from onboard.link.settings import mqtt_settings
from onboard.version import agent_version
from protocols import codec, compact, topics
from protocols.bounds import fit_raw
from protocols.errors import ProtocolError
from protocols.schemas import (
    SCHEMA_VERSION,
    Event,
    Presence,
    Stored,
    TelemetryBatch,
    TelemetryRecord,
)

log = logging.getLogger("busfleet.onboard.link")

AGENT_VERSION = agent_version()  # the installed release (onboard/update/)
WINDOW = 20  # batches sent and not yet confirmed by central
# Bigger messages on any subscribed topic are dropped unread; the broker is asked not to send
# them at all (MQTT 5 Maximum Packet Size, onboard/link/settings.py).
MAX_INBOUND = codec.MAX_PAYLOAD
MAX_SEQ = 2**63 - 1  # SQLite's largest integer: the outbox's sequence numbers are below it
RECEIPT_TIMEOUT_S = 15.0

T = TypeVar("T")


async def unswallowed(call: Awaitable[T]) -> T:
    """Await one of aiomqtt's calls (publish, subscribe), then honour a cancellation it
    swallowed. They wait for the broker's reply in asyncio.wait_for, which on Python 3.11
    returns the result when the cancellation and the reply (a PUBACK) meet in the same turn of
    the loop (CPython gh-86296, fixed in 3.12): the task then ran on, cancelled in name only,
    and waited for its next change forever; the agent never stopped (SIGTERM, a restart)."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0  # a stale count is not ours
    result = await call
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result


class Link:
    """Owns the MQTT connection of one bus."""

    def __init__(
        self,
        config: AgentConfig,
        outbox: Outbox,
        on_desired: Callable[[bytes], None],
        on_command: Callable[[bytes], None] = lambda _payload: None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.on_desired = on_desired
        self.on_command = on_command
        self.bus_id = config.bus.id
        self.wake = asyncio.Event()  # set when the outbox has something new
        self.connected = asyncio.Event()
        self.reported: bytes | None = None
        self._reported_changed = asyncio.Event()
        self.session = 0
        self.inflight: dict[int, float] = {}  # seq -> monotonic time sent
        self.sent_records = 0
        self.confirmed = 0
        self.resent = 0
        self.rejected = 0  # inbound messages dropped: too big, malformed or failing their handler
        self.unsendable = 0  # stored records no central would accept, marked stored here

    def set_reported(self, payload: bytes) -> None:
        self.reported = payload
        self._reported_changed.set()

    async def run(self) -> None:
        """Connect, and connect again after every outage (the onboard backoff policy)."""
        retries = Backoff(self.config.mqtt.backoff_max_s, first_s=0.5)
        async for _attempt in retries:
            try:
                await self._connected_session()
            except (aiomqtt.MqttError, OSError) as exc:
                if self.connected.is_set():
                    retries.reset()  # it was up: start the backoff again
                log.warning("link down: %s; reconnect within %.1f s", exc, retries.bound())
            self.connected.clear()
            self.inflight.clear()  # whatever had no receipt is sent again

    def _presence(self, online: bool) -> bytes:
        interval = self.config.telemetry.interval_s
        return codec.encode(
            Presence(
                bus=self.bus_id,
                online=online,
                session=self.session,
                t=time.time(),
                agent=AGENT_VERSION,
                offline_after_s=max(30.0, 3 * interval + self.config.mqtt.keepalive_s),
            )
        )

    async def _connected_session(self) -> None:
        self.session = self.outbox.next_counter("session")
        will = aiomqtt.Will(topics.presence(self.bus_id), self._presence(False), qos=1, retain=True)
        async with aiomqtt.Client(will=will, **mqtt_settings(self.config)) as client:
            log.info("link up (session %d, %d records pending)", self.session, self.outbox.count())
            await unswallowed(
                client.publish(
                    topics.presence(self.bus_id), self._presence(True), qos=1, retain=True
                )
            )
            for topic in (
                topics.desired(self.bus_id),
                topics.command(self.bus_id),
                topics.stored(self.bus_id),
            ):
                await unswallowed(client.subscribe(topic, qos=1))
            self.connected.set()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._receive(client), name="link-receive")
                    tg.create_task(self._send_outbox(client), name="link-outbox")
                    tg.create_task(self._send_reported(client), name="link-reported")
            except* aiomqtt.MqttError as group:
                raise group.exceptions[0] from None
            finally:
                # A clean stop says goodbye itself; the will covers crashes and lost links.
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(2):
                        await client.publish(
                            topics.presence(self.bus_id), self._presence(False), qos=1, retain=True
                        )

    async def _receive(self, client: aiomqtt.Client) -> None:
        handlers: dict[str, Callable[[bytes], None]] = {
            topics.desired(self.bus_id): self.on_desired,
            topics.command(self.bus_id): self.on_command,
            topics.stored(self.bus_id): self._on_receipt,
        }
        async for message in client.messages:
            topic = message.topic.value
            handler = handlers.get(topic)
            payload = message.payload
            if handler is None or not isinstance(payload, bytes):
                continue
            if len(payload) > MAX_INBOUND:
                self.rejected += 1
                log.warning("ignored %d bytes on %s (more than %d)", len(payload), topic,
                            MAX_INBOUND)  # fmt: skip
                continue
            try:
                handler(payload)
            except Exception:  # a retained message that kills the link would kill it again
                self.rejected += 1
                log.exception("ignored a message on %s that could not be handled", topic)

    def _on_receipt(self, payload: bytes) -> None:
        try:
            receipt = codec.decode(Stored, payload)
        except (ProtocolError, RecursionError) as exc:
            self.rejected += 1
            log.warning("ignored a bad receipt: %s", exc)
            return
        if not all(0 <= first <= last <= MAX_SEQ for first, last in receipt.ranges):
            self.rejected += 1
            log.warning("ignored a receipt with ranges out of bounds")
            return
        self.confirmed += self.outbox.confirm(receipt.ranges)
        for first, last in receipt.ranges:
            if last - first < 10_000:
                for seq in range(first, last + 1):
                    self.inflight.pop(seq, None)
        self.wake.set()

    async def _send_reported(self, client: aiomqtt.Client) -> None:
        while True:
            self._reported_changed.clear()
            if self.reported is not None:
                await unswallowed(
                    client.publish(topics.reported(self.bus_id), self.reported, qos=1, retain=True)
                )
            await self._reported_changed.wait()

    async def _send_outbox(self, client: aiomqtt.Client) -> None:
        limit = self.config.telemetry.batch_max
        while True:
            self.wake.clear()
            self._expire_inflight()
            batches_out = len(self.inflight) // max(1, limit)
            rows = [] if batches_out >= WINDOW else self._unsent(limit)
            if not rows or not self._due(rows, limit):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):  # also re-checks receipts that are late
                        await self.wake.wait()
                continue
            now = time.monotonic()
            rows = self._sendable(rows)
            for kind, group in groupby(rows, key=lambda r: r.kind):
                batch = list(group)
                topic, payload = self._batch(kind, batch)
                await unswallowed(client.publish(topic, payload, qos=1))
                for r in batch:
                    self.inflight[r.seq] = now
                self.sent_records += len(batch)

    def _sendable(self, rows: list[Pending]) -> list[Pending]:
        """The rows as central will accept them. A body that does not validate was stored by
        an older agent, before the schema's bounds (protocols/bounds.py): it is fitted and
        rewritten once; one that cannot be fitted would be refused and resent forever, so it
        is marked stored here, logged and counted (`unsendable`)."""
        out = []
        for row in rows:
            schema = TelemetryRecord if row.kind == "telemetry" else Event
            try:
                codec.decode(schema, row.body)
            except ProtocolError as exc:
                try:
                    fitted, dropped = fit_raw(codec.decode_json(row.body), schema)
                except ProtocolError:
                    self.unsendable += 1
                    self.outbox.confirm([(row.seq, row.seq)])
                    log.warning("record %d can never be sent, dropped: %s", row.seq, exc)
                    continue
                body = codec.encode(fitted)
                self.outbox.rewrite(row.seq, body)
                log.warning("record %d stored out of bounds, sent without %s", row.seq, dropped)
                row = dataclasses.replace(row, body=body)
            out.append(row)
        return out

    def _due(self, rows: list[Pending], limit: int) -> bool:
        """Telemetry waits to fill a message (fewer bytes); anything else goes at once."""
        if any(r.kind != "telemetry" for r in rows) or len(rows) >= limit:
            return True
        return time.time() - rows[0].created >= self.config.telemetry.send_every_s

    def _unsent(self, limit: int) -> list[Pending]:
        rows = self.outbox.pending(limit + len(self.inflight))
        return [r for r in rows if r.seq not in self.inflight][:limit]

    def _expire_inflight(self) -> None:
        if self.inflight and time.monotonic() - min(self.inflight.values()) > RECEIPT_TIMEOUT_S:
            self.resent += len(self.inflight)
            log.info("no receipt for %d records: sending them again", len(self.inflight))
            self.inflight.clear()

    def _batch(self, kind: str, rows: list[Pending]) -> tuple[str, bytes]:
        """One message of stored records. Bodies carry their sequence numbers (Outbox.put), so
        the JSON batch embeds them as stored; only the compact codec needs the records."""
        backfill = (
            time.time() - min(r.created for r in rows) > self.config.telemetry.backfill_after_s
        )
        if kind == "telemetry":
            topic = topics.telemetry(self.bus_id)
            if self.config.telemetry.codec == "compact":
                records = [codec.decode(TelemetryRecord, r.body) for r in rows]
                batch = TelemetryBatch(bus=self.bus_id, records=records, backfill=backfill)
                return topic, compact.encode_batch(batch)
            raw = [msgspec.Raw(r.body) for r in rows]
            return topic, _encoder.encode(
                RawTelemetryBatch(bus=self.bus_id, records=raw, backfill=backfill)
            )
        topic = topics.command_ack(self.bus_id) if kind == "cmd_ack" else topics.events(self.bus_id)
        raw = [msgspec.Raw(r.body) for r in rows]
        return topic, _encoder.encode(RawEventBatch(bus=self.bus_id, events=raw, backfill=backfill))


# The wire batches with their records already encoded: the same fields in the same order as
# protocols.schemas' TelemetryBatch and EventBatch, so the bytes are the same as
# codec.encode's (tests/test_agent_store.py holds them to it).
class RawTelemetryBatch(msgspec.Struct, frozen=True, kw_only=True):
    v: int = SCHEMA_VERSION
    bus: str
    records: list[msgspec.Raw]
    backfill: bool = False


class RawEventBatch(msgspec.Struct, frozen=True, kw_only=True):
    v: int = SCHEMA_VERSION
    bus: str
    events: list[msgspec.Raw]
    backfill: bool = False


_encoder = msgspec.json.Encoder()
