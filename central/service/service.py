"""`busfleet central serve`: ingest from the buses, keep fleet state, publish it to dashboards.

After storing a bus's records, central sends the bus a receipt (`stored`): only then does
the bus forget them. On every (re)connection central republishes the desired state of every
bus and the whole fleet view, so a broker that restarted without persistence loses nothing.
Several instances may share the ingest (`group`) and be one system; see "Several instances"
below.
Ingest also raises and clears alarms (central/service/alarm_center.py), published retained for the
dashboards; dispatchers' requests (central/service/dispatch.py) come on their own topic, skip the
ingest inbox and are answered one at a time.

The service is the only writer and the only publisher of desired state: requests from the
dashboards and the CLI tools (central/client.py), and the periodic sync (message expiry,
diversion windows: central/service/sync.py), all publish on this one client, and each writer
tells fleet state the new version itself; central does not listen to its own documents. Its
retained presence (`central/presence/{client_id}`, last will: offline) tells clients that
someone is there to answer.

Why paho with its own network thread here, not aiomqtt as everywhere else: at city scale
(10,000 buses at 1 Hz, bench/central_ingest.py) aiomqtt's per-message cost (a Message object,
a queue entry and a task per message, one event-loop turn per packet read) was most of
central's CPU. The paho thread reads, parses and acknowledges the packets and only appends
(topic, payload) to a bounded inbox; the event loop takes the inbox in batches, stores each
batch in one SQLite transaction (group commit) and only then sends the receipts. Publishing
from the event loop is paho's thread-safe, non-blocking `publish`: no round trip is awaited.

Several instances (`--group G`, each its own `--client-id`, one broker, one database)
---------------------------------------------------------------------------------------
Every instance is an ingest worker: MQTT 5 shared subscriptions spread the record streams
(telemetry, events, command answers) over the group; each stores its share and sends those
receipts, and (bus, seq) keys keep storage exactly-once whatever the order and whoever stores a
resend. A killed instance's unreceipted records come again from the buses (their outboxes
resend what no receipt covered) and the broker hands them to the others.

One instance at a time, the leader, also plays the live role (a lease in the database:
central/service/leader.py): it alone keeps the fleet view and the alarms, publishes fleet
entries, alarms and `central/stats`, answers dispatchers' requests, runs the desired sync,
command expiry and retention, and republishes the desired documents. For the live view it
subscribes, while leader only, to the full record streams (not shared) and feeds them to fleet
state and alarms without storing them again (`Ingest.observe_many`); its own share is stored
like the others'. The two copies of a record that reach the leader are told apart by MQTT 5
subscription identifiers (LIVE_SUBSCRIPTION on the full streams); a second client for the live
stream would need a second broker account, as deploy/'s broker forces the client id to the
username. Presence, reported and desired documents (retained: the latest is what counts) and
the requests are subscribed by the leader only too; the requests on the group's shared
subscription, so that one held for a moment by two instances still reaches only one.
Taking the role, an instance reloads fleet entries, desired versions and open alarms from the
store, where the last leader left them, subscribes (the retained documents come again), and
republishes; losing it, it unsubscribes and publishes nothing of the live role. Each instance
publishes its own counters on `central/stats/{client_id}` (the duplicates of the system are
their sum). Without `group` there is one instance, always live: no lease, no extra
subscription, no extra decoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from central import mqtt
from central.config import CentralConfig
from central.desired import Published
from central.fleet.alarms import AlarmParams
from central.notify.notifier import Notifier
from central.notify.rules import load_notify_config
from central.service.dispatch import Dispatch
from central.service.health_requests import health_params
from central.service.ingest import Ingest
from central.service.leader import RENEW_S, Leadership
from central.service.retention_task import RetentionTask
from central.service.rollout_task import RolloutTask
from central.service.sync import SYNC_INTERVAL_S, DesiredSync
from central.store.claim import service_claim
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.requests import CentralPresence
from protocols.schemas import CentralStats, DesiredState

log = logging.getLogger("busfleet.central.service")

# Not DESIRED: central writes those documents and knows their versions without the broker.
SUBSCRIPTIONS = (
    topics.Kind.PRESENCE,
    topics.Kind.TELEMETRY,
    topics.Kind.EVENTS,
    topics.Kind.COMMAND_ACK,
    topics.Kind.REPORTED,
)
# In a group: the record streams, each instance storing its share; the leader also takes them
# in full for its live view. The retained documents (the latest is what counts) go to the leader.
SHAREABLE = (topics.Kind.TELEMETRY, topics.Kind.EVENTS, topics.Kind.COMMAND_ACK)
LEADER_DOCUMENTS = (topics.Kind.PRESENCE, topics.Kind.REPORTED, topics.Kind.DESIRED)
LIVE_SUBSCRIPTION = 1  # MQTT 5 subscription identifier of the leader's full record streams

BATCH_S = 0.05  # at most one commit per this interval: under load, one commit for many messages
MAX_BATCH = 2000  # messages per transaction, so that the event loop turns a few times a second
INBOX_LIMIT = 50_000  # a full inbox stalls the paho thread: TCP, then the broker, hold the rest
INBOX_BYTES = 64 * 1024 * 1024  # and so does this much payload waiting, whatever the count
MAX_MESSAGE = mqtt.MAX_PACKET_BYTES  # a larger payload is dropped unread (and counted)
FLEET_CHUNK = 500  # fleet entries published between two turns of the event loop
REQUESTS_LIMIT = 100  # dispatchers' requests waiting; beyond, one is dropped (and logged)
# A bus's receipts at most this often: one sending faster (a backlog draining) gets one for
# all it sent meanwhile, not one a message; at 1 Hz nothing waits (Ingest.take_receipts).
RECEIPT_HOLD_S = 0.25


class Inbox:
    """Messages from the paho thread to the event loop, in arrival order.

    Bounded in messages and in bytes: when full, the paho thread waits (so it stops reading
    the socket and the broker queues for us, up to its max_queued_messages); nothing is
    dropped here.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limit: int = INBOX_LIMIT,
        max_bytes: int = INBOX_BYTES,
    ) -> None:
        self._loop = loop
        self._limit = limit
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, topic: str, payload: bytes) -> None:
        """Called on the paho thread."""
        with self._cond:
            while self._full() and not self._closed:
                self._cond.wait()
            self._items.append((topic, payload))
            self._bytes += len(payload)
            if len(self._items) == 1:
                self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self, limit: int = MAX_BATCH) -> list[tuple[str, bytes]]:
        """The oldest messages, at most `limit`; waits while there are none. Cancelling it
        (a timeout) loses nothing: it takes messages only after its one wait."""
        while True:
            await self._ready.wait()
            with self._cond:
                # A wake-up scheduled by `put` may arrive after its item was already taken.
                batch, self._items = self._items[:limit], self._items[limit:]
                self._bytes -= sum(len(p) for _t, p in batch)
                if not self._items:
                    self._ready.clear()
                self._cond.notify_all()
            if batch:
                return batch

    def _full(self) -> bool:
        # Some room is always made for one message, however large: it cannot wait for itself.
        return len(self._items) >= self._limit or (
            bool(self._items) and self._bytes >= self._max_bytes
        )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _busy(exc: BaseException) -> bool:
    """SQLite's write lock was not had within the busy timeout: another instance of the group
    (or an import, a purge) held it, or a slow disk made its commits long. Nothing was written:
    the store's transactions take the lock first (BEGIN IMMEDIATE), and in WAL mode a writer
    that has it is never busy afterwards. So the work is tried again, not the process ended."""
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _offer(queue: asyncio.Queue[tuple[str, bytes]], topic: str, payload: bytes) -> None:
    try:
        queue.put_nowait((topic, payload))
    except asyncio.QueueFull:
        log.warning("dropped a dispatch request on %s: %d waiting", topic, queue.qsize())


class CentralService:
    def __init__(self, config: CentralConfig, *, group: str | None = None) -> None:
        self.config = config
        self.group = group
        self.store = open_store(config.db)
        self.ingest = Ingest(self.store, config.offline_after_s)
        self.ingest.alarms.params = AlarmParams(
            overspeed_kmh=config.alarm_overspeed_kmh,
            sync_after_s=config.alarm_sync_after_s,
            timetable_late_s=config.alarm_timetable_late_s,
        )
        self.ingest.alarms.health.params = health_params(config)  # central/fleet/health.py
        # Dispatchers' requests; every desired version they write goes to fleet state.
        self.dispatch = Dispatch(self.store, config, self.ingest.alarms, self.ingest.on_desired)
        self.sync = DesiredSync(self.store)  # message expiry, diversion windows
        self.retention = RetentionTask(self.store, config)  # central/retention.py
        self.rollouts = RolloutTask(self.store, self.ingest.alarms)  # central/rollouts.py
        self.notifier: Notifier | None = None  # alarms by e-mail and webhook: the leader's
        if config.notify_file:
            self.notifier = Notifier(
                self.store, load_notify_config(config.notify_file), self._route
            )
            notifier = self.notifier
            self.ingest.alarms.notify = lambda a: notifier.offer(a) if self._live() else None
        for bus, payload in self.store.all_desired():  # fleet state starts with the versions
            self.ingest.on_desired(bus, codec.decode(DesiredState, payload))
        self.ready = asyncio.Event()  # subscribed and ingesting
        # In a group, the live role is the leader's alone; records only stored otherwise.
        self.leader = Leadership(self.store, config.identity) if group else None
        self.ingest.live = group is None
        # run() closes the store on its way out, unless whoever shares it closes it later
        # (serve.py: the HTTP server reads it until its own task has ended).
        self.closes_store = True
        self._client: paho.Client | None = None
        self._stored_topics: dict[str, str] = {}  # each bus's receipt topic, built once

    def _filters(self) -> list[str]:
        """What every instance subscribes to on every connection."""
        if self.group:
            return [topics.shared(self.group, topics.all_buses(k)) for k in SHAREABLE]
        return [topics.all_buses(k) for k in SUBSCRIPTIONS] + [topics.all_dispatch_requests()]

    def _live_filters(self) -> tuple[list[str], list[str]]:
        """In a group, what the leader subscribes to besides: (the full record streams, under
        LIVE_SUBSCRIPTION; the retained documents and the requests)."""
        assert self.group
        streams = [topics.all_buses(k) for k in SHAREABLE]
        others = [topics.all_buses(k) for k in LEADER_DOCUMENTS]
        return streams, [*others, topics.shared(self.group, topics.all_dispatch_requests())]

    def _route(self, bus: str) -> str | None:
        """The route a bus runs now, as fleet state knows it (for notification rules)."""
        state = self.ingest.buses.get(bus)
        return None if state is None else state.entry.route_id

    def _live(self) -> bool:
        """This instance plays the live role now: always alone, the leader's in a group."""
        return self.leader is None or self.leader.holds()

    def _subscribe_live(self, on: bool) -> None:
        """Subscribe to (or leave) the leader's streams and documents (in a group)."""
        if self._client is None or self.leader is None:
            return
        streams, others = self._live_filters()
        if not on:
            self._client.unsubscribe([*streams, *others])
            return
        props = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]  # paho
        props.SubscriptionIdentifier = LIVE_SUBSCRIPTION
        self._client.subscribe([(f, SubscribeOptions(qos=1)) for f in streams], properties=props)
        self._client.subscribe([(f, SubscribeOptions(qos=1)) for f in others])

    def _role_changed(self, live: bool) -> None:
        """This instance of a group took the live role (or lost it): central/service/leader.py."""
        if live:  # start from where the last leader left the view, in the store
            self.ingest.load_fleet()
            for bus, payload in self.store.all_desired():
                self.ingest.on_desired(bus, codec.decode(DesiredState, payload))
            self.ingest.alarms.resume()
            if self.ready.is_set():
                self._subscribe_live(True)
                self._republish()
        else:
            self._subscribe_live(False)
            self.ingest.alarms.take_outgoing()  # the next leader publishes what is to be

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inbox = Inbox(loop)
        live_inbox = Inbox(loop)  # in a group, the leader's full record streams
        connected: asyncio.Queue[bool] = asyncio.Queue()  # connection changes, in order
        client = mqtt.paho_client(self.config)
        self._client = client
        presence = topics.central_presence(self.config.identity)
        offline = CentralPresence(client_id=self.config.identity, online=False, t=time.time())
        client.will_set(presence, codec.encode(offline), qos=1, retain=True)
        v5 = self.config.mqtt_protocol == 5
        filters = self._filters()
        closing = threading.Event()  # our own disconnect is no loss to report

        def on_connect(c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                log.warning("broker refused the connection: %s", reason)
                return
            if v5:
                c.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
            else:
                c.subscribe([(f, 1) for f in filters])
            loop.call_soon_threadsafe(connected.put_nowait, True)

        def on_disconnect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if closing.is_set():
                return
            loop.call_soon_threadsafe(connected.put_nowait, False)
            log.warning("broker connection lost: %s; reconnecting", reason)

        def too_large(message: paho.MQTTMessage) -> bool:
            """Count and drop a payload over MAX_MESSAGE (on the paho thread: the count is
            the event loop's)."""
            size = len(message.payload)
            if size <= MAX_MESSAGE:
                return False
            detail = f"{message.topic}: payload of {size} bytes over {MAX_MESSAGE}"
            loop.call_soon_threadsafe(self.ingest.reject, "TooLarge", detail)
            return True

        # Dispatchers' requests bypass the ingest inbox: few, and answered one by one. They are
        # told apart by their prefix here, not by a paho per-filter callback: paho matches
        # every message against those filters, a cost per telemetry message.
        requests: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(REQUESTS_LIMIT)
        request_prefix = topics.all_dispatch_requests().partition("+")[0]

        grouped = self.group is not None

        def on_message(_c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
            if too_large(message):
                return
            topic = message.topic
            if topic.startswith(request_prefix):
                loop.call_soon_threadsafe(_offer, requests, topic, bytes(message.payload))
            elif grouped and LIVE_SUBSCRIPTION in getattr(
                message.properties, "SubscriptionIdentifier", ()
            ):
                live_inbox.put(topic, bytes(message.payload))
            else:
                inbox.put(topic, bytes(message.payload))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.connect_async(
            self.config.mqtt_host,
            self.config.mqtt_port,
            properties=mqtt.connect_properties(self.config),
        )
        client.loop_start()
        try:
            # While this runs, no tool writes the database behind our back (store/claim.py).
            async with _claimed(self.config.db), asyncio.TaskGroup() as tg:
                tg.create_task(self._connections(connected), name="connections")
                tg.create_task(self._receive(inbox), name="ingest")
                tg.create_task(self._publish(), name="publish")
                tg.create_task(self._requests(requests), name="dispatch")
                tg.create_task(self._sync(), name="desired-sync")
                rollouts = self.rollouts.run(self._live, self._send_desired, self._send_alarms)
                tg.create_task(rollouts, name="rollouts")  # the leader's (issue 16)
                if self.notifier is not None:
                    tg.create_task(self.notifier.run(), name="notify")
                if self.leader is None:
                    tg.create_task(self.retention.run(), name="retention")
                else:
                    tg.create_task(self._observe(live_inbox), name="live-view")
                    tg.create_task(self._retention(), name="retention")
                    tg.create_task(self.leader.run(self._role_changed), name="leader")
        finally:
            closing.set()
            inbox.close()
            live_inbox.close()
            if self.leader is not None and self.leader.holds():
                self.leader.release()  # the next instance takes the role at once
            gone = CentralPresence(client_id=self.config.identity, online=False, t=time.time())
            with contextlib.suppress(RuntimeError, ValueError):  # not connected: the will said it
                client.publish(presence, codec.encode(gone), qos=1, retain=True).wait_for_publish(2)
            client.disconnect()
            client.loop_stop()
            if self.closes_store:
                self.store.close()

    def counters(self) -> dict[str, int]:
        """What CentralStats carries: the ingest's counters, the dispatchers' requests
        (`dispatch_*`: refused, impersonations, ...) and the alarms (`alarms_*`)."""
        out = dict(self.ingest.counters)
        out.update({f"dispatch_{k}": v for k, v in self.dispatch.counters.items()})
        out.update({f"alarms_{k}": v for k, v in self.ingest.alarms.counters.items()})
        out.update(self.retention.counters)  # retention_purged_{kind}, retention_runs
        if self.notifier is not None:
            out.update({f"notify_{k}": v for k, v in self.notifier.counters.items()})
        return out

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        """Queue a publish on the paho thread; QoS 1 ones go out after a reconnect, too."""
        assert self._client is not None
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def _send_alarms(self) -> None:
        """Changed alarms, retained (central/service/alarm_center.py), QoS 1: never dropped."""
        for topic, payload, retain in self.ingest.alarms.take_outgoing():
            self._send(topic, payload, qos=1, retain=retain)

    async def _requests(self, requests: asyncio.Queue[tuple[str, bytes]]) -> None:
        """Dispatchers' requests (central/service/dispatch.py), each answered.

        Each is a task of its own: a quick one runs to its answer at once, in arrival order
        (it never awaits); a slow one (a listing, a report, an import: on a thread) does not
        hold up the acknowledgements and assignments behind it. At most REQUESTS_LIMIT are
        under way; the broker and the bounded queue hold the rest.
        """
        room = asyncio.Semaphore(REQUESTS_LIMIT)
        async with asyncio.TaskGroup() as tg:
            while True:
                topic, payload = await requests.get()
                await room.acquire()
                tg.create_task(self._request(topic, payload, room), name="request")

    async def _request(self, topic: str, payload: bytes, room: asyncio.Semaphore) -> None:
        try:
            for out_topic, out_payload, retain in await self.dispatch.handle(topic, payload):
                self._send(out_topic, out_payload, qos=1, retain=retain)
        finally:
            room.release()

    def _send_desired(self, published: Published) -> None:
        """Publish desired documents this process wrote, and tell fleet state their versions."""
        for bus, (_version, payload) in sorted(published.items()):
            self.ingest.on_desired(bus, codec.decode(DesiredState, payload))
            self._send(topics.desired(bus), payload, qos=1, retain=True)

    async def _sync(self) -> None:
        """Message expiry and diversion windows, every few seconds (central/service/sync.py)."""
        while True:
            try:
                if self._live():
                    self._send_desired(self.sync.step(time.time()))
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                self._was_busy("desired sync", exc)
            await asyncio.sleep(SYNC_INTERVAL_S)

    async def _retention(self) -> None:
        """In a group: the retention task's purges, by the leader (RetentionTask.run alone)."""
        due = 0.0
        while True:
            now = time.time()
            if now >= due and self._live() and self.retention.policy.cutoffs(now):
                await self.retention.purge_once(now)
                due = now + self.retention.every_s
            await asyncio.sleep(RENEW_S)

    async def _observe(self, live_inbox: Inbox) -> None:
        """In a group: the leader's live view of the full record streams (nothing stored)."""
        while True:
            batch = await live_inbox.take()
            if self._live():  # a message that came just after the role was lost: not ours
                self.ingest.observe_many(batch)
                self._send_alarms()

    def _republish(self) -> None:
        """What the live role publishes, all of it again: after a (re)connection (a broker
        restarted without persistence loses nothing) and on taking the role."""
        for bus, payload in self.store.all_desired():
            self._send(topics.desired(bus), payload, qos=1, retain=True)
        self.ingest.dirty.update(self.ingest.buses)
        self.ingest.alarms.republish()

    async def _connections(self, connected: asyncio.Queue[bool]) -> None:
        while True:
            if not await connected.get():
                self.ready.clear()
                continue
            if self._live():
                self._subscribe_live(True)  # in a group: the subscriptions are per connection
                self._republish()
            here = CentralPresence(client_id=self.config.identity, online=True, t=time.time())
            self._send(
                topics.central_presence(self.config.identity),
                codec.encode(here),
                qos=1,
                retain=True,
            )
            log.info("central subscribed on %s:%d", self.config.mqtt_host, self.config.mqtt_port)
            self.ready.set()

    async def _receive(self, inbox: Inbox) -> None:
        """Group commit: each batch of messages is one transaction, then its receipts.

        Receipts go at QoS 0: at 10,000 buses a receipt a message, QoS 1's PUBACK and paho's
        bookkeeping of it were a fifth of central's CPU (bench/central_ingest.py). A lost
        receipt loses nothing: the agent keeps each record in its outbox until a receipt
        confirms it (onboard/link/outbox.py), sends again whatever had none after
        RECEIPT_TIMEOUT_S or a reconnection (onboard/link/mqtt.py: `_expire_inflight`,
        `run`), and central stores the resend once ((bus, seq) keys) and receipts all of it
        again, duplicates included (`Ingest._telemetry`). What it costs is that resend: a
        receipt dropped by a broken link or by the broker for an offline bus (QoS 0 is not
        queued for it) means one receipt timeout's worth of records sent twice.

        A bus's receipts go at most every RECEIPT_HOLD_S: one draining a backlog gets one
        receipt for all it sent meanwhile instead of one a message (a publish each: paho's
        cost per message is most of central's); a bus at 1 Hz waits for nothing. A held
        receipt goes when its time is up, whether or not more messages come.
        """
        while True:
            held = self.ingest.receipts_due_in(time.monotonic(), RECEIPT_HOLD_S)
            try:
                async with asyncio.timeout(held):  # a held receipt falls due meanwhile
                    batch = await inbox.take()
            except TimeoutError:
                batch = []
            started = time.monotonic()
            while batch:
                try:
                    self.ingest.handle_many(batch)
                    break
                except sqlite3.OperationalError as exc:
                    if not _busy(exc):
                        raise
                    self._was_busy("ingest", exc)
                    await asyncio.sleep(BATCH_S)
            for receipt in self.ingest.take_receipts(time.monotonic(), RECEIPT_HOLD_S):
                topic = self._stored_topics.get(receipt.bus)
                if topic is None:  # one per bus that sent records: as many as fleet state's
                    topic = self._stored_topics[receipt.bus] = topics.stored(receipt.bus)
                self._send(topic, codec.encode(receipt), qos=0)  # see above
            if self._live():
                self._send_alarms()
            await asyncio.sleep(max(0.0, started + BATCH_S - time.monotonic()))

    def _was_busy(self, what: str, exc: BaseException) -> None:
        self.ingest.counters["store_busy"] += 1
        log.warning("%s: database busy (%s); trying again", what, exc)

    async def _publish(self) -> None:
        """Fleet entries to dashboards and stats, coalesced per interval."""
        last_stats = 0.0
        while True:
            await asyncio.sleep(self.config.fleet_publish_s)
            try:
                last_stats = await self._publish_once(last_stats)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                self._was_busy("publish", exc)  # what it was to write is written next time

    async def _publish_once(self, last_stats: float) -> float:
        """One round of `_publish`; returns when stats last went out."""
        now = time.time()
        live = self._live()
        if live:
            self.ingest.tick(now)
            self._send_alarms()
            expired = self.store.expire_commands(now)
            if expired:
                log.info("%d commands expired without an answer", expired)
        if not self.ready.is_set():
            return last_stats  # QoS 0, retained: all of them go out on the next connection
        if live:
            await self._publish_fleet()
        if now - last_stats >= 2.0:
            last_stats = now
            stats = codec.encode(CentralStats(t=now, counters=self.counters()))
            if live:
                self._send(topics.central_stats(), stats, qos=0, retain=True)
            if self.group:
                mine = topics.central_instance_stats(self.config.identity)
                self._send(mine, stats, qos=0, retain=True)
        return last_stats

    async def _publish_fleet(self) -> None:
        for i, (entry, payload) in enumerate(self.ingest.take_dirty_encoded(), start=1):
            if i % FLEET_CHUNK == 0:  # thousands of buses: let the ingest run in between
                await asyncio.sleep(0)
                if not self._live():
                    return  # the next leader publishes them
            self._send(topics.fleet(entry.bus), payload, qos=0, retain=True)


@contextlib.asynccontextmanager
async def _claimed(db: str) -> AsyncIterator[None]:
    with service_claim(db):
        yield
