"""Alarms that reach people: the alarm center offers every alarm change (`offer`, never
blocking: a bounded queue); the notifier's own task matches the rules (central/notify/rules.py),
stores one delivery per e-mail address and webhook (central/store/notify.py) and hands it to its
lane: one lane for e-mail and one per webhook, each draining its deliveries in due order. So a
dead SMTP server or a hanging webhook delays only its own lane, never ingest, the alarm center
or another lane. A failed attempt is tried again with capped exponential backoff, every attempt
logged in the deliveries table; a delivery in a rule's quiet hours waits for their end (state
`held`), unless the alarm is an emergency. An alarm a rule escalates and that is still
unacknowledged `escalate_after_min` after it was raised goes to the escalation targets.

Only the instance in the live role offers changes (central/service/service.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec

from central.fleet.alarms import ACTIVE, info
from central.notify.rules import NotifyConfig, Rule, quiet_until
from central.notify.senders import Mailer, SendError, post_webhook
from central.store import groups as groups_db
from central.store import notify as notify_db
from central.store.db import CentralStore
from central.store.notify import Delivery
from protocols.schemas import Alarm

__all__ = ["Notifier"]

log = logging.getLogger("busfleet.central.notify")

TICK_S = 1.0  # escalations are looked for this often (at most)
MAIL = "email"


class _Lane:
    """One destination's deliveries, earliest due first."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, str, Delivery]] = []
        self.wake = asyncio.Event()

    def put(self, d: Delivery) -> None:
        heapq.heappush(self.heap, (d.due, d.id, d))
        self.wake.set()


class Notifier:
    def __init__(
        self,
        store: CentralStore,
        config: NotifyConfig,
        route_of: Callable[[str], str | None] = lambda _bus: None,
    ) -> None:
        self.store = store
        self.config = config
        self.route_of = route_of
        self.counters: dict[str, int] = {
            "offered": 0, "dropped": 0, "sent": 0, "failed": 0, "retried": 0, "held": 0,
            "escalated": 0, "errors": 0,
        }  # fmt: skip
        self._queue: asyncio.Queue[Alarm] = asyncio.Queue(config.queue_limit)
        self._lanes: dict[str, _Lane] = {MAIL: _Lane()}
        self._lanes.update({name: _Lane() for name in config.webhooks})
        self._latest: dict[str, Alarm] = {}  # alarms watched for escalation: the latest state
        self._escalate: list[tuple[float, str, str]] = []  # (when, alarm id, rule name)
        self._rules = {r.name: r for r in config.rules}
        self._bodies: dict[str, str] = {}  # delivery id -> its JSON document, until done

    # -- the alarm center's side: never blocks ----------------------------------------------
    def offer(self, alarm: Alarm) -> None:
        """An alarm was stored (raised, acknowledged, cleared, closed)."""
        self.counters["offered"] += 1
        try:
            self._queue.put_nowait(alarm)
        except asyncio.QueueFull:
            self.counters["dropped"] += 1
            log.warning(
                "notification of alarm %s dropped: %d waiting", alarm.id, self._queue.qsize()
            )

    # -- the notifier's own tasks -----------------------------------------------------------
    async def run(self) -> None:
        mailer = Mailer(self.config.smtp) if self.config.smtp is not None else None
        try:
            async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
                tg.create_task(self._route(), name="notify-rules")
                tg.create_task(self._escalations(), name="notify-escalation")
                if mailer is not None:
                    tg.create_task(self._drain(self._lanes[MAIL], self._mail(mailer)), name="mail")
                for name, hook in self.config.webhooks.items():

                    def post(d: Delivery, hook_name: str = name) -> Awaitable[None]:
                        return post_webhook(
                            session, self.config.webhooks[hook_name], self._body(d), d.id
                        )

                    tg.create_task(
                        self._drain(self._lanes[name], post), name=f"webhook-{hook.name}"
                    )
        finally:
            if mailer is not None:
                mailer.close()

    async def _route(self) -> None:
        while True:
            alarm = await self._queue.get()
            try:
                self._on_alarm(alarm, time.time())
            except Exception:  # a database hiccup loses this notification, not the service
                self.counters["errors"] += 1
                log.exception("notification of alarm %s", alarm.id)

    def _on_alarm(self, alarm: Alarm, now: float) -> None:
        if alarm.id in self._latest:
            self._latest[alarm.id] = alarm
        if alarm.acked_by is not None:  # acknowledged: nothing escalates
            self._latest.pop(alarm.id, None)
            return
        if alarm.state != ACTIVE:
            return
        route = self.route_of(alarm.bus)
        for rule in self._matching(alarm, route):
            if notify_db.has_delivery(self.store, alarm.id, rule.name, "alarm"):
                continue  # raised again (after a restart): told once
            self._deliver(alarm, rule, "alarm", rule.email, rule.webhooks, now)
            if rule.escalate_after_min > 0:
                self._latest[alarm.id] = alarm
                due = alarm.raised_t + rule.escalate_after_min * 60
                heapq.heappush(self._escalate, (due, alarm.id, rule.name))

    def _matching(self, alarm: Alarm, route: str | None) -> list[Rule]:
        out = []
        for rule in self.config.rules:
            in_groups = any(
                alarm.bus in (groups_db.members(self.store, g) or []) for g in rule.groups
            )
            if rule.matches(alarm.kind, alarm.severity, route, in_groups):
                out.append(rule)
        return out

    def _deliver(
        self,
        alarm: Alarm,
        rule: Rule,
        purpose: str,
        emails: tuple[str, ...],
        hooks: tuple[str, ...],
        now: float,
    ) -> None:
        held = quiet_until(rule, alarm.severity, now)
        if held is not None:
            self.counters["held"] += 1
        body = msgspec.json.encode(
            {"purpose": purpose, "rule": rule.name, "route": self.route_of(alarm.bus),
             "title": info(alarm.kind).title, "alarm": alarm}
        ).decode()  # fmt: skip
        targets = [(MAIL, a) for a in emails] + [(h, h) for h in hooks]
        for lane, target in targets:
            d = Delivery(
                id=uuid.uuid4().hex,
                alarm=alarm.id,
                rule=rule.name,
                purpose=purpose,
                channel="email" if lane == MAIL else "webhook",
                target=target,
                state="held" if held is not None else "pending",
                attempts=0,
                created=now,
                due=held if held is not None else now,
                sent=None,
                error="",
            )
            notify_db.add_delivery(self.store, d)
            self._bodies[d.id] = body
            self._lanes[lane].put(d)

    async def _escalations(self) -> None:
        while True:
            await asyncio.sleep(TICK_S if not self._escalate else min(TICK_S, 0.1))
            now = time.time()
            while self._escalate and self._escalate[0][0] <= now:
                _, alarm_id, rule_name = heapq.heappop(self._escalate)
                alarm = self._latest.get(alarm_id)
                rule = self._rules[rule_name]
                if alarm is None or alarm.acked_by is not None:
                    continue  # acknowledged meanwhile
                try:
                    if notify_db.has_delivery(self.store, alarm_id, rule_name, "escalation"):
                        continue
                    self.counters["escalated"] += 1
                    log.warning(
                        "alarm %s unacknowledged: escalated by rule %s", alarm_id, rule_name
                    )
                    self._deliver(
                        alarm, rule, "escalation", rule.escalate_email, rule.escalate_webhooks, now
                    )
                except Exception:
                    self.counters["errors"] += 1
                    log.exception("escalation of alarm %s", alarm_id)

    def _mail(self, mailer: Mailer) -> Callable[[Delivery], Awaitable[None]]:
        def send(d: Delivery) -> Awaitable[None]:
            alarm = msgspec.json.decode(self._bodies[d.id])["alarm"]
            what = "ESCALATED " if d.purpose == "escalation" else ""
            subject = f"[busfleet] {what}{info(alarm['kind']).title}: {alarm['bus']}"
            text = (
                f"{alarm['bus']}: {info(alarm['kind']).title} (severity {alarm['severity']})\n"
                f"{alarm.get('text', '')}\nalarm {alarm['id']}, rule {d.rule}\n"
            )
            return mailer.send(d.target, subject, text)

        return send

    def _body(self, d: Delivery) -> bytes:
        return self._bodies[d.id].encode()

    async def _drain(self, lane: _Lane, send: Callable[[Delivery], Awaitable[None]]) -> None:
        """One destination's deliveries, one at a time in due order, each retried."""
        while True:
            lane.wake.clear()
            if not lane.heap:
                await lane.wake.wait()
                continue
            wait = lane.heap[0][0] - time.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await lane.wake.wait()
                continue
            _, _, d = heapq.heappop(lane.heap)
            try:
                await self._attempt(lane, d, send)
            except Exception:
                self.counters["errors"] += 1
                log.exception("delivery %s of alarm %s", d.id, d.alarm)

    async def _attempt(
        self, lane: _Lane, d: Delivery, send: Callable[[Delivery], Awaitable[None]]
    ) -> None:
        attempts = d.attempts + 1
        try:
            await send(d)
        except SendError as exc:
            now = time.time()
            if attempts > self.config.retries:
                self.counters["failed"] += 1
                log.error("delivery %s (%s %s) failed for good: %s", d.id, d.channel, d.target, exc)
                self._bodies.pop(d.id, None)
                notify_db.record_attempt(
                    self.store, d.id, state="failed", attempts=attempts, due=now, sent=None,
                    error=str(exc),
                )  # fmt: skip
                return
            self.counters["retried"] += 1
            backoff = min(self.config.retry_base_s * 2 ** (attempts - 1), self.config.retry_max_s)
            log.warning("delivery %s (%s): %s; again in %.0f s", d.id, d.channel, exc, backoff)
            again = dataclasses.replace(
                d, attempts=attempts, due=now + backoff, state="pending", error=str(exc)
            )
            notify_db.record_attempt(
                self.store, d.id, state="pending", attempts=attempts, due=again.due, sent=None,
                error=str(exc),
            )  # fmt: skip
            lane.put(again)
            return
        now = time.time()
        self.counters["sent"] += 1
        self._bodies.pop(d.id, None)
        log.info("delivery %s (%s %s) of alarm %s sent", d.id, d.channel, d.target, d.alarm)
        notify_db.record_attempt(
            self.store, d.id, state="sent", attempts=attempts, due=d.due, sent=now, error=d.error
        )
