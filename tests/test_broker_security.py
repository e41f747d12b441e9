"""The fleet link is secure by default: real mosquitto running deploy/mosquitto's config.

One broker per module: TLS with development certificates; on the city listener the accounts
`central` and `central-2` (role central), `dispatcher` and `tools` (role dispatcher); on the bus
listener buses provisioned by busfleet.broker.provision. Both listeners force client ids to
usernames: an account is one connection, so a test that needs two uses two accounts.

Every "is not delivered" check is made against a sentinel that the same publisher sends
after the refused message and that the subscriber is allowed to get: the broker keeps each
publisher's order, so when the sentinel arrives, a delivered forgery would already be there.
No sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import msgspec
import pytest

from busfleet.broker.launch import mosquitto_path
from busfleet.broker.provision import remove_user
from busfleet.broker.secure import SecureBroker, run_secure_mosquitto
from central import client
from central import mqtt as central_mqtt
from central.config import CentralConfig
from onboard.agent import Agent
from onboard.config import load_config
from protocols import codec, compact, topics
from protocols.requests import ListMedia
from protocols.schemas import Presence, ReportedState
from tests.broker_helpers import WAIT, Session
from tests.conftest import REPO
from tests.fleet_helpers import central_running
from tests.test_deploy_files import DOWNLINK, UPLINK


# Not a skip: CI has everything installed, so a missing broker is a failure that says why.
@pytest.fixture(autouse=True)
def _mosquitto_is_installed() -> None:
    assert mosquitto_path(), "mosquitto is not installed (./run setup installs it)"


NOT_AUTHORIZED = 0x87
ACCEPTED = {0x00, 0x10}  # success; "no matching subscribers" (also a success in MQTT 5)
# A bad password: mosquitto 2.0.11 answers "not authorized" (0x87), other versions may say
# "bad user name or password" (0x86); either way there is no session.
BAD_CREDENTIALS = {0x86, 0x87}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    with run_secure_mosquitto(tmp_path_factory.mktemp("secure"), buses=("bus-a", "bus-b")) as b:
        b.add_account("central-2", "central")
        b.add_account("tools", "dispatcher")
        yield b


class Connect(Protocol):
    def __call__(
        self, user: str, *, bus_port: bool = False, client_id: str = "", clean_start: bool = True
    ) -> Session: ...


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture
def connect(broker: SecureBroker, sessions: list[Session]) -> Connect:
    """connect(user, bus_port=False, **kw): a connected session, its password looked up."""

    def make(
        user: str, *, bus_port: bool = False, client_id: str = "", clean_start: bool = True
    ) -> Session:
        port = broker.port if bus_port else broker.city_port
        password = broker.password(user)
        s = Session(broker, user, password, port=port, client_id=client_id, clean_start=clean_start)
        sessions.append(s)
        assert s.connack().value == 0, f"{user} was refused"
        return s

    return make


def refused(
    broker: SecureBroker,
    sessions: list[Session],
    user: str | None,
    password: str | None = None,
    *,
    port: int | None = None,
) -> int:
    """The CONNACK reason code of a login that must fail."""
    s = Session(broker, user, password, port=port)
    sessions.append(s)
    rc = s.connack()
    assert rc.is_failure
    return int(rc.value)


def test_an_anonymous_client_is_refused_on_both_listeners(
    broker: SecureBroker, sessions: list[Session]
) -> None:
    for port in (broker.port, broker.city_port):
        assert refused(broker, sessions, None, port=port) == NOT_AUTHORIZED


def test_a_wrong_password_or_unknown_user_is_refused(
    broker: SecureBroker, sessions: list[Session]
) -> None:
    wrong = broker.password("bus-b")
    assert refused(broker, sessions, "bus-a", wrong, port=broker.port) in BAD_CREDENTIALS
    assert refused(broker, sessions, "central", wrong) in BAD_CREDENTIALS
    assert refused(broker, sessions, "bus-z", wrong, port=broker.port) in BAD_CREDENTIALS


def test_a_client_without_tls_never_gets_a_session(
    broker: SecureBroker, sessions: list[Session]
) -> None:
    s = Session(broker, "bus-a", broker.password("bus-a"), port=broker.port, tls=False)
    sessions.append(s)
    with pytest.raises(queue.Empty):
        s.connacks.get(timeout=3)


def test_central_receives_a_bus_telemetry_and_presence(connect: Connect) -> None:
    central = connect("central")
    central.subscribe(
        topics.all_buses(topics.Kind.TELEMETRY), topics.all_buses(topics.Kind.PRESENCE)
    )
    bus = connect("bus-a", bus_port=True)
    assert bus.publish(topics.presence("bus-a"), b"born") in ACCEPTED
    assert bus.publish(topics.telemetry("bus-a"), b"records") in ACCEPTED
    got = central.until(topics.telemetry("bus-a"), b"records")
    assert (topics.presence("bus-a"), b"born") in got


@pytest.mark.parametrize("kind", UPLINK, ids=lambda k: k.value)
def test_a_bus_publishes_its_own_uplink_topics_but_not_another_bus(
    connect: Connect, kind: topics.Kind
) -> None:
    central = connect("central")
    central.subscribe("busfleet/v1/bus/#")
    bus_a = connect("bus-a", bus_port=True)
    assert bus_a.publish(topics.bus_topic("bus-b", kind), b"forged") == NOT_AUTHORIZED
    assert bus_a.publish(topics.bus_topic("bus-a", kind), b"sentinel") in ACCEPTED
    got = central.until(topics.bus_topic("bus-a", kind), b"sentinel")
    assert not [m for m in got if m[1] == b"forged"]
    if kind is topics.Kind.REPORTED or kind is topics.Kind.PRESENCE:
        assert bus_a.publish(topics.bus_topic("bus-a", kind), b"", retain=True) in ACCEPTED


@pytest.mark.parametrize("kind", DOWNLINK, ids=lambda k: k.value)
def test_only_the_addressed_bus_reads_a_downlink_topic_and_no_bus_writes_one(
    connect: Connect, kind: topics.Kind
) -> None:
    central = connect("central")
    mine, theirs = topics.bus_topic("bus-a", kind), topics.bus_topic("bus-b", kind)
    assert central.publish(theirs, b"retained-b", retain=True) in ACCEPTED
    bus_a = connect("bus-a", bus_port=True)
    bus_b = connect("bus-b", bus_port=True)
    assert bus_a.publish(mine, b"self-made") == NOT_AUTHORIZED
    # mosquitto 2.0 grants these subscriptions in its SUBACK; the ACL filters delivery.
    bus_a.subscribe(theirs, topics.all_buses(kind), mine)
    bus_b.subscribe(theirs)
    assert bus_b.until(theirs) == [(theirs, b"retained-b")]
    assert central.publish(theirs, b"live-b") in ACCEPTED
    assert central.publish(mine, b"sentinel") in ACCEPTED
    assert bus_b.until(theirs) == [(theirs, b"live-b")]
    assert bus_a.until(mine, b"sentinel") == [(mine, b"sentinel")]
    assert central.publish(theirs, b"", retain=True) in ACCEPTED  # clear for the other tests


def test_a_bus_cannot_write_the_fleet_view_or_central_stats(connect: Connect) -> None:
    bus_a = connect("bus-a", bus_port=True)
    for topic in (topics.fleet("bus-a"), topics.fleet("bus-b"), topics.central_stats()):
        assert bus_a.publish(topic, b"forged") == NOT_AUTHORIZED, topic


def test_a_bus_cannot_take_over_another_bus_connection(connect: Connect) -> None:
    bus_b = connect("bus-b", bus_port=True, client_id="bus-b")
    # Same client id: without use_username_as_clientid the broker would drop bus-b's session.
    connect("bus-a", bus_port=True, client_id="bus-b")
    assert bus_b.publish(topics.telemetry("bus-b"), b"still here") in ACCEPTED
    assert bus_b.disconnects == []


def test_a_dispatcher_cannot_publish_telemetry_or_steer_a_bus(connect: Connect) -> None:
    central = connect("central")
    central.subscribe("busfleet/v1/#")
    dispatcher = connect("dispatcher")
    forged = [
        topics.telemetry("bus-a"),
        # `pattern` rules apply to every user: the ACL must deny the dispatcher's own subtree.
        topics.telemetry("dispatcher"),
        topics.presence("bus-a"),
        topics.reported("bus-a"),
        topics.desired("bus-a"),
        topics.command("bus-a"),
        topics.fleet("bus-a"),
        topics.central_stats(),
    ]
    for topic in forged:
        assert dispatcher.publish(topic, b"forged") == NOT_AUTHORIZED, topic
    bus = connect("bus-a", bus_port=True)
    assert bus.publish(topics.telemetry("bus-a"), b"sentinel") in ACCEPTED
    got = central.until(topics.telemetry("bus-a"), b"sentinel")
    assert not [m for m in got if m[1] == b"forged"]


def test_central_cannot_pose_as_a_bus_named_central(connect: Connect) -> None:
    central = connect("central")
    assert central.publish(topics.telemetry("central"), b"forged") == NOT_AUTHORIZED


def test_a_dispatcher_reads_the_fleet_view_presence_and_reported_state_only(
    connect: Connect,
) -> None:
    dispatcher = connect("dispatcher", client_id="dash-1")
    dispatcher.subscribe("busfleet/v1/#")
    bus = connect("bus-a", bus_port=True)
    central = connect("central")
    assert bus.publish(topics.telemetry("bus-a"), b"telemetry") in ACCEPTED
    assert bus.publish(topics.presence("bus-a"), b"presence") in ACCEPTED
    assert bus.publish(topics.reported("bus-a"), b"reported") in ACCEPTED
    assert central.publish(topics.command("bus-a"), b"command") in ACCEPTED
    assert central.publish(topics.fleet("bus-a"), b"fleet") in ACCEPTED
    assert central.publish(topics.central_stats(), b"stats") in ACCEPTED
    got = dispatcher.until(topics.central_stats(), b"stats")
    payloads = {p for _, p in got}
    assert {b"presence", b"reported", b"fleet", b"stats"} <= payloads
    assert not payloads & {b"telemetry", b"command"}


def test_a_dispatcher_asks_central_and_reads_alarms_and_answers_but_forges_neither(
    connect: Connect,
) -> None:
    central = connect("central")
    central.subscribe(topics.all_dispatch_requests())
    dispatcher = connect("dispatcher", client_id="dash-2")
    mine = topics.dispatch_reply("dispatcher")
    dispatcher.subscribe(topics.all_alarms(), mine)
    assert dispatcher.publish(topics.alarm("a-1"), b"forged") == NOT_AUTHORIZED
    assert dispatcher.publish(mine, b"forged") == NOT_AUTHORIZED
    assert dispatcher.publish(topics.dispatch_request("dispatcher"), b"request") in ACCEPTED
    central.until(topics.dispatch_request("dispatcher"), b"request")
    assert central.publish(topics.alarm("a-1"), b"alarm", retain=True) in ACCEPTED
    assert central.publish(mine, b"reply") in ACCEPTED
    got = dispatcher.until(mine, b"reply")
    assert (topics.alarm("a-1"), b"alarm") in got
    assert not [m for m in got if m[1] == b"forged"]
    assert central.publish(topics.alarm("a-1"), b"", retain=True) in ACCEPTED  # tidy up


def test_only_dispatchers_ask_central_and_the_service_account_asks_nobody(
    connect: Connect,
) -> None:
    # The CLI tools log in as dispatchers; central accounts are the service's alone, which
    # answers requests and never makes one (so a request always comes from a dispatcher).
    service = connect("central-2")
    service.subscribe(topics.all_dispatch_requests())
    central = connect("central")
    dispatcher = connect("dispatcher", client_id="dash-3")
    for name in ("central", "dispatcher"):
        assert central.publish(topics.dispatch_request(name), b"forged") == NOT_AUTHORIZED
    assert dispatcher.publish(topics.dispatch_request("dispatcher"), b"asked") in ACCEPTED
    got = service.until(topics.dispatch_request("dispatcher"), b"asked")
    assert not [m for m in got if m[1] == b"forged"]


def test_central_ingest_workers_share_one_subscription(connect: Connect) -> None:
    group = topics.shared("ingest", topics.all_buses(topics.Kind.TELEMETRY))
    # One account per worker: the broker forces each client id to its username.
    workers = [connect(account) for account in ("central", "central-2")]
    for w in workers:
        w.subscribe(group)
    bus = connect("bus-a", bus_port=True)
    sent = [f"batch-{i}".encode() for i in range(40)]
    for payload in sent:
        assert bus.publish(topics.telemetry("bus-a"), payload) in ACCEPTED
    got: dict[int, list[bytes]] = {0: [], 1: []}
    deadline = time.monotonic() + WAIT
    while sum(map(len, got.values())) < len(sent) and time.monotonic() < deadline:
        for i, w in enumerate(workers):
            with contextlib.suppress(queue.Empty):
                got[i].append(bytes(w.messages.get(timeout=0.05).payload))
    assert got[0] and got[1]  # the broker spread the batches over both workers
    assert sorted(got[0] + got[1]) == sorted(sent)  # each batch exactly once over the group


def test_a_revoked_bus_is_dropped_at_the_next_reload_and_refused_after(
    broker: SecureBroker,
    connect: Connect,
    sessions: list[Session],
) -> None:
    broker.provision("bus-stolen")
    password = broker.password("bus-stolen")
    stolen = connect("bus-stolen", bus_port=True)
    assert remove_user(broker.password_file, "bus-stolen")
    broker.reload()
    assert stolen.disconnected.wait(WAIT)
    assert refused(broker, sessions, "bus-stolen", password, port=broker.port) in BAD_CREDENTIALS


async def test_the_provisioned_agent_connects_over_tls_and_its_records_arrive(
    broker: SecureBroker, tmp_path: Path
) -> None:
    done = broker.provision("bus-agent")
    config = broker.agent_config("bus-agent")
    assert config == load_config(done.agent_config)
    assert config.mqtt.ca_file and config.mqtt.password_file  # provisioned for TLS + password
    config = dataclasses.replace(
        config,
        bus=dataclasses.replace(config.bus, data_dir=str(tmp_path / "agent")),
        can=dataclasses.replace(config.can, interface="none"),
        gps=dataclasses.replace(
            config.gps, source="replay", replay_path=str(REPO / "data/nmea/bu353s4.log")
        ),
        telemetry=dataclasses.replace(config.telemetry, interval_s=0.2, send_every_s=0.5),
    )
    (tmp_path / "agent").mkdir()
    presence, reported, batch = None, None, None
    async with central_mqtt.client(broker.central_config(client_id="central-test")) as central:
        await central.subscribe(f"{topics.ROOT}/bus/bus-agent/#", qos=1)
        bus = Agent(config)
        agent = asyncio.create_task(bus.run(), name="agent")
        try:
            async with asyncio.timeout(WAIT):
                async for message in central.messages:
                    assert isinstance(message.payload, bytes)
                    kind = topics.parse(message.topic.value).kind
                    if kind is topics.Kind.PRESENCE:
                        presence = codec.decode(Presence, message.payload)
                    elif kind is topics.Kind.REPORTED:
                        reported = codec.decode(ReportedState, message.payload)
                    elif kind is topics.Kind.TELEMETRY:
                        batch = compact.decode_batch(message.payload)
                    if presence and reported and batch:
                        break
        finally:
            agent.cancel()
            await asyncio.gather(agent, return_exceptions=True)
    assert presence is not None and presence.online and presence.bus == "bus-agent"
    assert reported is not None and reported.bus == "bus-agent"
    assert batch is not None and batch.bus == "bus-agent" and batch.records


async def test_central_settings_refuse_a_broker_with_an_unknown_certificate(
    broker: SecureBroker, tmp_path: Path
) -> None:
    from busfleet.broker.tls import make_dev_certificates

    other_ca = make_dev_certificates(tmp_path / "other").ca_file
    config = broker.central_config(mqtt_ca_file=str(other_ca))
    with pytest.raises(Exception) as caught:  # aiomqtt wraps the SSL error in MqttError
        async with central_mqtt.client(config):
            pass
    chain = [caught.value, caught.value.__cause__, caught.value.__context__]
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or (
        "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    )


# --- identities on the city listener (issue 13) ---------------------------------------------


def test_a_bus_password_is_refused_on_the_city_listener_and_a_service_one_on_the_bus_listener(
    broker: SecureBroker, sessions: list[Session]
) -> None:
    # A bus that knows its own password cannot come to where central and the dashboards are.
    for bus in ("bus-a", "bus-b"):
        password = broker.password(bus)
        assert refused(broker, sessions, bus, password, port=broker.city_port) in BAD_CREDENTIALS
    for user in ("central", "dispatcher"):
        password = broker.password(user)
        assert refused(broker, sessions, user, password, port=broker.port) in BAD_CREDENTIALS


def test_a_dispatcher_asking_for_centrals_client_id_and_session_does_not_knock_central_off(
    connect: Connect,
) -> None:
    central = connect("central", client_id="central")
    central.subscribe(topics.all_dispatch_requests())
    # Same client id, and "resume that session" (clean_start=0): without the forced client id
    # the broker would drop central and hand its session and subscriptions to the dispatcher.
    thief = connect("dispatcher", client_id="central", clean_start=False)
    assert thief.publish(topics.dispatch_request("dispatcher"), b"sentinel") in ACCEPTED
    central.until(topics.dispatch_request("dispatcher"), b"sentinel")
    assert central.publish(topics.fleet("bus-a"), b"still here") in ACCEPTED
    assert central.disconnects == []


def test_a_dispatcher_asks_under_its_own_account_and_reads_its_own_answers_only(
    connect: Connect,
) -> None:
    central = connect("central")
    central.subscribe(topics.all_dispatch_requests())
    dispatcher = connect("dispatcher")
    dispatcher.subscribe("busfleet/v1/dispatch/+/reply")
    for name in ("tools", "alice"):  # another account's name, or one nobody has
        assert dispatcher.publish(topics.dispatch_request(name), b"forged") == NOT_AUTHORIZED
    assert dispatcher.publish(topics.dispatch_request("dispatcher"), b"sentinel") in ACCEPTED
    got = central.until(topics.dispatch_request("dispatcher"), b"sentinel")
    assert not [m for m in got if m[1] == b"forged"]
    assert central.publish(topics.dispatch_reply("tools"), b"theirs") in ACCEPTED
    assert central.publish(topics.dispatch_reply("dispatcher"), b"mine") in ACCEPTED
    got = dispatcher.until(topics.dispatch_reply("dispatcher"), b"mine")
    assert not [m for m in got if m[1] == b"theirs"]


async def test_central_and_a_worker_run_at_once_and_refuse_a_request_in_another_dispatchers_name(
    broker: SecureBroker, tmp_path: Path
) -> None:
    # Two central processes and a tool, each with an account of its own: all connected at once.
    def worker(account: str) -> CentralConfig:
        folder = tmp_path / account
        return broker.central_config(
            account, db=str(folder / "central.sqlite"), media_dir=str(folder / "media")
        )

    with central_running(worker("central")), central_running(worker("central-2")):
        async with client.connect(broker.central_config("tools")) as requests:
            async with asyncio.timeout(WAIT):
                while requests.online != {"central", "central-2"}:  # noqa: ASYNC110 (no event per worker)
                    await asyncio.sleep(0.05)
            honest = await requests.ask(client.envelope(ListMedia()), WAIT)
            assert honest.ok, honest.error
            # A request that says it is from someone else than the account it came from:
            # published by hand, as Requests.send signs every request with its account.
            raw = msgspec.json.decode(codec.encode(client.envelope(ListMedia())))
            raw |= {"id": "forged", "by": "alice"}
            waiting = asyncio.get_running_loop().create_future()
            requests._waiting["forged"] = waiting
            topic = topics.dispatch_request("tools")
            await requests.client.publish(topic, msgspec.json.encode(raw), qos=1)
            async with asyncio.timeout(WAIT):
                forged = await waiting
    assert not forged.ok and not forged.failed
    assert "'alice'" in forged.error and "'tools'" in forged.error, forged.error
