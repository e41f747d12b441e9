"""Alarms that reach people (central/notify/): a real SMTP server with STARTTLS (aiosmtpd) and a
local webhook receiver, alarms raised through the real ingest path, both database backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from central.notify import rules as notify_rules
from central.notify.notifier import Notifier
from central.notify.rules import NotifyConfigError, parse_notify_config, quiet_until, verify
from central.service.ingest import Ingest
from central.store import notify as notify_db
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.schemas import Event, EventBatch, Presence
from tests.postgres_helpers import free_port

SECRET = "s3cret-shared-with-the-receiver"


# -- the servers ------------------------------------------------------------------------------
def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])

    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "smtp.crt", tmp / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class Mailbox:
    port: int
    ca_file: Path
    mails: list[Message] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)

    async def handle_DATA(
        self, _server: Any, session: Any, envelope: Any
    ) -> str:  # aiosmtpd's hook name
        self.tls.append(session.ssl is not None)
        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    """A real SMTP server on a free port that refuses mail before STARTTLS."""
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox(port=free_port(), ca_file=cert)
    controller = Controller(
        box, hostname="127.0.0.1", port=box.port, tls_context=context, require_starttls=True
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Receiver:
    url: str
    posts: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many POSTs first

    def documents(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(body) for body, _ in self.posts]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A local webhook receiver (aiohttp) on a free port."""
    port = free_port()
    rec = Receiver(url=f"http://127.0.0.1:{port}/hook")

    async def hook(request: web.Request) -> web.Response:
        rec.posts.append((await request.read(), dict(request.headers)))
        if rec.fail_first:
            rec.fail_first -= 1
            return web.Response(status=500)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def silent_smtp() -> AsyncIterator[int]:
    """An 'SMTP server' that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for w in held:
            w.close()
        server.close()


# -- helpers ----------------------------------------------------------------------------------
def config_text(tmp: Path, smtp_port: int, ca: Path | str, hook_url: str, rules: str) -> str:
    (tmp / "hook.secret").write_text(SECRET + "\n")
    (tmp / "smtp.password").write_text("never-in-a-log\n")
    return f"""
[notify]
retries = 3
retry_base_s = 0.05
[smtp]
host = "127.0.0.1"
port = {smtp_port}
sender = "busfleet@test"
ca_file = "{ca}"
timeout_s = 20
[[webhooks]]
name = "ops"
url = "{hook_url}"
secret_file = "hook.secret"
[[webhooks]]
name = "duty"
url = "{hook_url}?duty"
secret_file = "hook.secret"
{rules}
"""


def bus_event(ingest: Ingest, bus: str, kind: str, severity: int, seq: int) -> None:
    """A live event from a bus, through ingest's real path (as tests/test_alarms.py)."""
    now = time.time()
    birth = Presence(bus=bus, online=True, session=1, t=now)
    ingest.handle(topics.presence(bus), codec.encode(birth), now)
    batch = EventBatch(bus=bus, events=[Event(seq=seq, t=now, kind=kind, severity=severity)])
    ingest.handle(topics.events(bus), codec.encode(batch), now)


async def until(condition: Callable[[], bool], what: str, limit_s: float = 20.0) -> None:
    """Wait for a condition (a generous ceiling for a slow CI machine, never a timing check)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Notifier], None]]:
    tasks: list[asyncio.Task[None]] = []

    def start(n: Notifier) -> None:
        tasks.append(asyncio.create_task(n.run()))

    yield start
    for t in tasks:
        t.cancel()
    for t in tasks:
        with pytest.raises(asyncio.CancelledError):
            await t


def setup(central_db: str, tmp_path: Path, text: str) -> tuple[Ingest, Notifier]:
    store = open_store(central_db)
    config = parse_notify_config(text, "notify.toml", tmp_path)
    notifier = Notifier(store, config)
    ingest = Ingest(store)
    ingest.alarms.notify = notifier.offer
    return ingest, notifier


OFF_ROUTE_RULE = """
[[rules]]
name = "off-route"
kinds = ["off_route"]
email = ["ops@example.org"]
webhooks = ["ops"]
"""


# -- the tests --------------------------------------------------------------------------------
async def test_an_off_route_alarm_sends_one_mail_over_starttls_and_one_signed_post(
    central_db: str, tmp_path: Path, mailbox: Mailbox, receiver: Receiver, running: Any
) -> None:
    text = config_text(tmp_path, mailbox.port, mailbox.ca_file, receiver.url, OFF_ROUTE_RULE)
    ingest, notifier = setup(central_db, tmp_path, text)
    running(notifier)
    bus_event(ingest, "bus-1", "off_route", 3, seq=1)
    bus_event(ingest, "bus-1", "gps_lost", 2, seq=2)  # no rule takes it
    [alarm] = [a for a in ingest.alarms.alarms() if a.kind == "off_route"]
    sent = lambda: [d.state for d in notify_db.deliveries(ingest.store)] == ["sent", "sent"]  # noqa: E731
    await until(sent, "both deliveries sent")
    assert len(mailbox.mails) == 1 and mailbox.tls == [True]
    mail = mailbox.mails[0]
    assert mail["To"] == "ops@example.org" and "bus-1" in mail["Subject"]
    assert "off route" in mail["Subject"]
    [(body, headers)] = receiver.posts
    assert verify(SECRET.encode(), body, headers["X-Busfleet-Signature"], time.time())
    assert not verify(b"another secret", body, headers["X-Busfleet-Signature"], time.time())
    assert not verify(SECRET.encode(), body + b" ", headers["X-Busfleet-Signature"], time.time())
    doc = msgspec.json.decode(body)
    assert (doc["purpose"], doc["rule"], doc["alarm"]["id"]) == ("alarm", "off-route", alarm.id)
    # The alarm raised again (the bus says it twice) and cleared: still one of each.
    bus_event(ingest, "bus-1", "back_on_route", 0, seq=3)
    ingest.alarms.acknowledge(alarm.id, "dispatcher-1", "")
    bus_event(ingest, "bus-2", "off_route", 3, seq=1)  # a second alarm as a marker
    four = lambda: [d.state for d in notify_db.deliveries(ingest.store)] == ["sent"] * 4  # noqa: E731
    await until(four, "the second bus's deliveries sent")
    assert sorted(m["Subject"].split(": ")[-1] for m in mailbox.mails) == ["bus-1", "bus-2"]
    assert [d["alarm"]["bus"] for d in receiver.documents()] == ["bus-1", "bus-2"]
    assert "never-in-a-log" not in repr(notifier.config)


async def test_an_unacknowledged_emergency_escalates_and_an_acknowledged_one_does_not(
    central_db: str, tmp_path: Path, receiver: Receiver, running: Any
) -> None:
    rules = """
[[rules]]
name = "emergencies"
kinds = ["emergency"]
webhooks = ["ops"]
escalate_after_min = 0.005
escalate_webhooks = ["duty"]
"""
    text = config_text(tmp_path, 1, "", receiver.url, rules)  # [smtp] there but unused
    ingest, notifier = setup(central_db, tmp_path, text)
    running(notifier)
    bus_event(ingest, "bus-2", "emergency", 4, seq=1)  # raised first: escalation due first
    [acked] = ingest.alarms.alarms(bus="bus-2")
    ingest.alarms.acknowledge(acked.id, "dispatcher-1", "on it")
    bus_event(ingest, "bus-1", "emergency", 4, seq=1)
    escalated = lambda: any(d["purpose"] == "escalation" for d in receiver.documents())  # noqa: E731
    await until(escalated, "an escalation")
    await until(lambda: notifier.counters["sent"] == 3, "three deliveries sent")
    docs = sorted((d["purpose"], d["alarm"]["bus"]) for d in receiver.documents())
    assert docs == [("alarm", "bus-1"), ("alarm", "bus-2"), ("escalation", "bus-1")]
    [escalation] = [d for d in notify_db.deliveries(ingest.store) if d.purpose == "escalation"]
    assert (escalation.target, escalation.state) == ("duty", "sent")
    assert notifier.counters["escalated"] == 1


async def test_a_silent_smtp_server_delays_neither_webhooks_nor_ingest(
    central_db: str, tmp_path: Path, receiver: Receiver, silent_smtp: int, running: Any
) -> None:
    text = config_text(tmp_path, silent_smtp, "", receiver.url, OFF_ROUTE_RULE)
    ingest, notifier = setup(central_db, tmp_path, text)
    running(notifier)
    for i in range(3):
        bus_event(ingest, f"bus-{i}", "off_route", 3, seq=1)
    assert ingest.alarms.counters["raised"] == 3  # ingest went on: offer never waits
    await until(lambda: len(receiver.posts) == 3, "three POSTs")
    # Meanwhile the mail lane is still stuck on its first mail (the server never greets).
    mails = [d for d in notify_db.deliveries(ingest.store) if d.channel == "email"]
    assert len(mails) == 3 and all(d.state == "pending" for d in mails)
    assert notifier.counters["sent"] == 3 and notifier.counters["retried"] == 0


async def test_a_failed_webhook_is_retried_and_every_attempt_recorded(
    central_db: str, tmp_path: Path, receiver: Receiver, running: Any
) -> None:
    receiver.fail_first = 2
    rules = '[[rules]]\nname = "all"\nwebhooks = ["ops"]\n'
    text = config_text(tmp_path, 1, "", receiver.url, rules)
    ingest, notifier = setup(central_db, tmp_path, text)
    running(notifier)
    bus_event(ingest, "bus-1", "off_route", 3, seq=1)
    done = lambda: [d.state for d in notify_db.deliveries(ingest.store)] == ["sent"]  # noqa: E731
    await until(done, "the delivery sent")
    [d] = notify_db.deliveries(ingest.store)
    assert (d.attempts, d.error) == (3, "webhook ops: HTTP 500")
    assert len(receiver.posts) == 3 and notifier.counters["retried"] == 2


async def test_quiet_hours_hold_back_an_alarm_but_not_an_emergency(
    central_db: str, tmp_path: Path, receiver: Receiver, running: Any
) -> None:
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(hours=1)), (now + dt.timedelta(hours=1))
    rules = f"""
[[rules]]
name = "night"
webhooks = ["ops"]
quiet_hours = "{start:%H:%M}-{end:%H:%M}"
timezone = "UTC"
"""
    text = config_text(tmp_path, 1, "", receiver.url, rules)
    ingest, notifier = setup(central_db, tmp_path, text)
    running(notifier)
    bus_event(ingest, "bus-1", "off_route", 3, seq=1)
    bus_event(ingest, "bus-2", "emergency", 4, seq=1)
    await until(lambda: len(receiver.posts) == 1, "the emergency's POST")
    assert [d["alarm"]["bus"] for d in receiver.documents()] == ["bus-2"]
    states = {d.target + d.alarm: d for d in notify_db.deliveries(ingest.store)}
    held = [d for d in states.values() if d.state == "held"]
    assert len(held) == 1 and held[0].due > time.time() + 3000
    assert notifier.counters["held"] == 1


def test_quiet_hours_span_midnight_in_the_rules_time_zone() -> None:
    rule = notify_rules.Rule(name="r", quiet_hours=(22 * 60, 6 * 60), timezone="Australia/Brisbane")
    # 23:30 in Brisbane (UTC+10, no daylight saving) is 13:30 UTC.
    t = dt.datetime(2030, 1, 1, 13, 30, tzinfo=dt.UTC).timestamp()
    until_t = quiet_until(rule, 3, t)
    assert until_t == dt.datetime(2030, 1, 1, 20, 0, tzinfo=dt.UTC).timestamp()  # 06:00 local
    assert quiet_until(rule, 4, t) is None  # an emergency is never held
    noon = dt.datetime(2030, 1, 1, 2, 0, tzinfo=dt.UTC).timestamp()  # 12:00 local
    assert quiet_until(rule, 3, noon) is None


def test_a_bad_notify_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(NotifyConfigError, match="no \\[\\[webhooks\\]\\] named 'nope'"):
        parse_notify_config('[[rules]]\nname = "r"\nwebhooks = ["nope"]\n', "n.toml", tmp_path)
    with pytest.raises(NotifyConfigError, match="no \\[smtp\\]"):
        parse_notify_config('[[rules]]\nname = "r"\nemail = ["a@b"]\n', "n.toml", tmp_path)
    with pytest.raises(NotifyConfigError, match="quiet_hours"):
        parse_notify_config('[[rules]]\nname = "r"\nquiet_hours = "late"\n', "n.toml", tmp_path)
    with pytest.raises(NotifyConfigError, match="secret_file"):
        parse_notify_config('[[webhooks]]\nname = "h"\nurl = "http://x"\n', "n.toml", tmp_path)


def test_the_deploy_example_parses_and_every_key_is_documented(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "deploy" / "notify.example.toml"
    for name in ("smtp-password", "ops-chat.secret", "duty-pager.secret"):
        (tmp_path / name).write_text("x\n")
    config = parse_notify_config(example.read_text(), str(example), tmp_path)
    assert [r.name for r in config.rules] == ["off-route and faults", "emergencies"]
    assert config.rules[1].escalate_webhooks == ("duty-pager",)
    readme = (example.parent / "README.md").read_text()
    assert "`central.notify_file`" in readme and "notify.example.toml" in readme
