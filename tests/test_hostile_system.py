"""The running system against hostile peers (issue 13), on deploy/'s production broker config.

Real mosquitto with TLS, a password file and an ACL per listener and client ids forced to the
account; `busfleet central serve` with its HTTP server and a provisioned agent with its Wi-Fi
portal, each a child process; dashboards under Textual's pilot. An authenticated bus sends
every payload that once killed or blinded central; a passenger posts markup and cross-site
forms to the portal; a dispatcher asks in another's name and uploads a broken feed; a second
central account writes the desired documents that once killed the agent. Afterwards central
answers, its GTFS-RT feeds answer 200, the agent applies what central sends, every dashboard
screen draws the hostile text as text, and each rejection is counted where an operator looks:
central's stats (`rejected_*`, `implausible_time`, `command_answers_unmatched`,
`dispatch_impersonations`, `dispatch_bad`) and the bus's reported state.

The tests run in file order on one city; each waits for a positive sign (a sentinel stored, a
counter grown, a reply), never for a fixed time.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from busfleet.broker.launch import free_port, mosquitto_path
from busfleet.broker.provision import agent_toml
from busfleet.broker.secure import SecureBroker, run_secure_mosquitto
from central.dashboard.app import create_app
from central.dashboard.messages import BusAction
from central.dashboard.screens.bus_detail import BusDetailScreen
from central.dashboard.screens.reports import ReportsScreen
from central.dashboard.widgets.alarm_table import AlarmTable
from central.dashboard.widgets.fleet_table import FleetTable
from protocols import codec, compact, topics
from protocols.requests import DispatchReply
from protocols.schemas import (
    CentralStats,
    Position,
    ReportedState,
    Stored,
    TelemetryBatch,
    TelemetryRecord,
)
from tests.broker_helpers import WAIT, Session
from tests.conftest import DATA
from tests.fleet_helpers import rows, wait_for
from tests.secure_fleet import central_toml


# Not a skip: CI has everything installed, so a missing broker is a failure that says why.
@pytest.fixture(autouse=True)
def _mosquitto_is_installed() -> None:
    assert mosquitto_path(), "mosquitto is not installed (./run setup installs it)"


GOOD, EVIL = "bus-good", "bus-evil"
HOSTILE = "[/] [@click=app.quit] quit [b]"
BIG = 2**63
GAPPED = 60_000  # records with gaps between their seqs: one receipt would exceed 1 MB


@dataclass
class City:
    broker: SecureBroker
    workdir: Path
    db: Path
    http_port: int
    portal_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "busfleet.cli", *args], stderr=log, stdout=subprocess.DEVNULL
        )

    def start_central(self) -> None:
        self.start("central", "central", "serve", "--config", str(self.workdir / "central.toml"))

    def start_agent(self) -> None:
        self.start("agent", "agent", "--config", str(self.workdir / "agent.toml"))

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def session(self, user: str, *, bus: bool = False) -> Session:
        """The one connection of an account: the broker forces client ids to usernames, so a
        second one would knock the first off (and it would come back, and so on)."""
        if user not in self.sessions:
            port = self.broker.port if bus else self.broker.city_port
            s = Session(self.broker, user, self.broker.password(user), port=port)
            assert s.connack().value == 0, f"{user} was refused"
            self.sessions[user] = s
        return self.sessions[user]

    def tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A dispatcher's CLI tool, as the `tools` account (the dashboard is `dispatcher`)."""
        return subprocess.run(
            [sys.executable, "-m", "busfleet.cli", "central", *args, "--config", self.tools_toml],
            capture_output=True,
            text=True,
            timeout=120,
        )

    @property
    def tools_toml(self) -> str:
        return str(self.workdir / "tools.toml")

    def http(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}{path}", timeout=30
            ) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    workdir = tmp_path_factory.mktemp("hostile")
    with run_secure_mosquitto(workdir / "broker", buses=(GOOD, EVIL)) as broker:
        broker.add_account("tools", "dispatcher")  # the CLI beside the dashboard
        broker.add_account("watch", "dispatcher")  # the test's eyes on presence and reports
        broker.add_account("stats", "dispatcher")  # and on central's counters
        broker.add_account("central-2", "central")  # a second central account, gone rogue
        city = City(broker, workdir, workdir / "central.sqlite", free_port(), free_port())
        service = broker.central_config(
            db=str(city.db), media_dir=str(workdir / "media"), http_port=city.http_port
        )
        (workdir / "central.toml").write_text(central_toml(service))
        tools = broker.central_config("tools", db=str(city.db))
        (workdir / "tools.toml").write_text(central_toml(tools))
        agent = broker.agent_config(GOOD)
        agent = dataclasses.replace(
            agent,
            bus=dataclasses.replace(agent.bus, data_dir=str(workdir / GOOD)),
            gps=dataclasses.replace(agent.gps, source="none"),
            can=dataclasses.replace(agent.can, interface="none"),
            display=dataclasses.replace(agent.display, enabled=False),
            driver=dataclasses.replace(agent.driver, enabled=False),
            portal=dataclasses.replace(
                agent.portal,
                enabled=True,
                listen_host="127.0.0.1",
                listen_port=city.portal_port,
                address="127.0.0.1",  # the bus's address on the passengers' network
                firewall="null",
            ),
        )
        (workdir / "agent.toml").write_text(agent_toml(agent))
        try:
            city.session("stats").subscribe(topics.central_stats())
            city.start_central()
            watch = city.session("watch")
            watch.subscribe(topics.all_central_presence())
            wait_central_online(watch)
            city.start_agent()
            watch.subscribe(topics.reported(GOOD))
            watch.until(topics.reported(GOOD))
            done = city.tool("import-gtfs", str(DATA / "gtfs" / "cairns_gtfs.zip"))
            assert done.returncode == 0, done.stderr
            yield city
        finally:
            for s in city.sessions.values():
                s.close()
            for name in list(city.procs):
                city.kill(name)


def wait_central_online(s: Session) -> None:
    from protocols.requests import CentralPresence

    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        msg = s.messages.get(timeout=WAIT)
        presence = "central/presence" in msg.topic and msg.payload
        if presence and codec.decode(CentralPresence, bytes(msg.payload)).online:
            return
    raise AssertionError("central did not come online")


def stats(city: City, at_least: dict[str, int]) -> dict[str, int]:
    """Central's counters (published every 2 s), once each named one has reached its value."""
    s = city.session("stats")
    deadline = time.monotonic() + WAIT
    counters: dict[str, int] = {}
    while time.monotonic() < deadline:
        msg = s.messages.get(timeout=WAIT)
        if msg.topic == topics.central_stats():
            counters = codec.decode(CentralStats, bytes(msg.payload)).counters
            if all(counters.get(k, 0) >= v for k, v in at_least.items()) and s.messages.empty():
                return counters
    short = {k: counters.get(k, 0) for k in at_least}
    raise AssertionError(f"counters {short} never reached {at_least}")


def drain(s: Session) -> None:
    """Forget what a session received so far: what it waits for next is news."""
    while not s.messages.empty():
        s.messages.get_nowait()


def counters_now(city: City) -> dict[str, int]:
    return stats(city, {})


def stored_seqs(city: City, bus: str) -> set[int]:
    return {
        r[0]
        for r in rows(city.db, "SELECT seq FROM telemetry WHERE bus = ?", bus)
        + rows(city.db, "SELECT seq FROM events WHERE bus = ?", bus)
    }


def json_record(seq: Any, t: Any, **record: Any) -> bytes:
    """A telemetry batch as JSON, built by hand: the schema would refuse to build these."""
    body = {"v": 1, "bus": EVIL, "records": [{"seq": seq, "t": t, **record}]}
    return json.dumps(body).encode()


def json_events(*events: dict[str, Any]) -> bytes:
    return json.dumps({"v": 1, "bus": EVIL, "events": list(events)}).encode()


def test_a_hostile_bus_is_refused_and_counted_and_central_survives_it_retained(
    city: City,
) -> None:
    now = time.time()
    before = counters_now(city)
    evil = city.session(EVIL, bus=True)
    evil.subscribe(topics.stored(EVIL))
    refused = {  # each of these must fail the schema: rejected_CodecError
        "seq 2^63": (topics.telemetry(EVIL), json_record(BIG, now)),
        "negative seq": (topics.telemetry(EVIL), json_record(-1, now)),
        "t 1e20": (topics.telemetry(EVIL), json_record(10, 1e20)),
        "negative t": (topics.telemetry(EVIL), json_record(11, -5.0)),
        "severity 2^63": (
            topics.events(EVIL),
            json_events({"seq": 12, "t": now, "kind": "x", "severity": BIG}),
        ),
        "session 2^63": (
            topics.presence(EVIL),
            json.dumps({"v": 1, "bus": EVIL, "online": True, "session": BIG, "t": now}).encode(),
        ),
        "offline_after_s 1e300": (
            topics.presence(EVIL),
            json.dumps(
                {"v": 1, "bus": EVIL, "online": True, "session": 1, "t": now}
                | {"offline_after_s": 1e300}
            ).encode(),
        ),
        "version 2^63": (
            topics.reported(EVIL),
            json.dumps({"v": 1, "bus": EVIL, "version": BIG, "t": now}).encode(),
        ),
        "delay 2^40": (
            topics.reported(EVIL),
            json.dumps(
                {"v": 1, "bus": EVIL, "version": 0, "t": now}
                | {"journey": {"t": now, "trip_id": "x", "delay_s": 2**40}}
            ).encode(),
        ),
        "emergency at 1e20": (
            topics.events(EVIL),
            json_events({"seq": 13, "t": 1e20, "kind": "emergency", "severity": 4}),
        ),
        "garbage": (topics.events(EVIL), b"\xff\x00{not json"),
        "nested 100,000 deep": (
            topics.events(EVIL),
            b'{"v":1,"bus":"bus-evil","events":[],"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        ),
    }
    for what, (topic, payload) in refused.items():
        # Retained where the broker keeps it: central meets it again at every restart.
        retain = topic in (topics.presence(EVIL), topics.reported(EVIL))
        assert evil.publish(topic, payload, retain=retain) == 0, what
    # What the schema lets through but central must judge: a clock ten years ahead, an alarm
    # of a kind that is markup, an emergency off the globe, then a genuine one.
    ahead = now + 10 * 365 * 86400
    ok = [
        (topics.telemetry(EVIL), json_record(20, ahead, pos={"lat": -17.5, "lon": 145.0})),
        (
            topics.events(EVIL),
            json_events(
                {"seq": 21, "t": now, "kind": "[/]", "severity": 3, "data": {"text": HOSTILE}},
                {"seq": 22, "t": now, "kind": "emergency", "severity": 4, "data": {"lat": 999}},
            ),
        ),
        (
            topics.events(EVIL),
            json_events(
                {"seq": 23, "t": now + 1, "kind": "emergency", "severity": 4}
                | {"data": {"lat": -16.92, "lon": 145.77}}
            ),
        ),
    ]
    for topic, payload in ok:
        assert evil.publish(topic, payload) == 0
    here = Position(lat=-16.92, lon=145.77)
    sentinel = TelemetryBatch(bus=EVIL, records=[TelemetryRecord(seq=30, t=time.time(), pos=here)])
    evil.publish(topics.telemetry(EVIL), compact.encode_batch(sentinel))
    wait_for(lambda: {20, 21, 22, 23, 30} <= stored_seqs(city, EVIL), WAIT, "sentinel stored")
    assert not {BIG, -1, 10, 11, 12, 13} & stored_seqs(city, EVIL)

    after = stats(
        city,
        {
            "rejected_CodecError": before.get("rejected_CodecError", 0) + len(refused),
            "implausible_time": before.get("implausible_time", 0) + 1,
        },
    )
    assert after.get("errors", 0) == before.get("errors", 0), "a handler failed"
    # The live position comes from the sentinel, not from the record ten years ahead.
    entry = json.loads(rows(city.db, "SELECT body FROM buses WHERE bus = ?", EVIL)[0][0])
    assert entry["t"] < now + 3600 and entry["lat"] == here.lat, entry
    # Both emergencies are alarms a dispatcher sees and can take, the first without position.
    alarms = rows(city.db, "SELECT kind, state FROM alarms WHERE bus = ?", EVIL)
    assert ("emergency", "active") in alarms and ("[/]", "active") in alarms, alarms

    # Central killed and started again meets the retained hostile documents once more.
    city.kill("central")
    watch = city.session("watch")
    drain(watch)
    drain(city.session("stats"))
    city.start_central()
    wait_central_online(watch)
    again = stats(city, {"rejected_CodecError": 1})
    assert city.alive("central")
    assert again.get("errors", 0) == 0


def test_a_bus_cannot_log_in_where_central_and_dispatchers_do(city: City) -> None:
    # Its password is not valid on the city listener: it cannot take central's client id.
    intruder = Session(city.broker, EVIL, city.broker.password(EVIL), port=city.broker.city_port)
    try:
        assert intruder.connack().is_failure
    finally:
        intruder.close()
    assert city.alive("central")


def test_sixty_thousand_gapped_records_get_receipts_each_under_the_packet_limit(
    city: City,
) -> None:
    evil = city.session(EVIL, bus=True)
    evil.subscribe(topics.stored(EVIL))
    t0 = time.time()
    seqs = list(range(1_000, 1_000 + 2 * GAPPED, 2))  # every other one: one range each
    for i in range(0, len(seqs), 1_000):
        part = seqs[i : i + 1_000]
        batch = TelemetryBatch(
            bus=EVIL, records=[TelemetryRecord(seq=s, t=t0 + n * 1e-3) for n, s in enumerate(part)]
        )
        evil.publish(topics.telemetry(EVIL), compact.encode_batch(batch))
    confirmed: set[int] = set()
    sizes = []
    deadline = time.monotonic() + 3 * WAIT
    while not set(seqs) <= confirmed:
        assert time.monotonic() < deadline, f"{len(set(seqs) - confirmed)} never confirmed"
        msg = evil.messages.get(timeout=WAIT)
        if msg.topic != topics.stored(EVIL):
            continue
        sizes.append(len(msg.payload))
        for first, last in codec.decode(Stored, bytes(msg.payload)).ranges:
            confirmed.update(range(first, last + 1))
    assert max(sizes) < 1_048_576 // 4, max(sizes)
    assert len(set(seqs) & stored_seqs(city, EVIL)) == GAPPED
    assert city.alive("central")


def test_a_bus_cannot_answer_another_bus_command(city: City) -> None:
    before = counters_now(city)
    sent = city.tool("command", GOOD, "announce", "--arg", "text=hello")
    assert sent.returncode == 0, sent.stderr
    command_id = sent.stdout.strip().rsplit("id ", 1)[-1]
    evil = city.session(EVIL, bus=True)
    forged = {"seq": 40, "t": time.time(), "kind": "cmd_ack"} | {
        "data": {"id": command_id, "result": "failed", "reason": HOSTILE}
    }
    evil.publish(topics.command_ack(EVIL), json_events(forged))
    stats(
        city,
        {"command_answers_unmatched": before.get("command_answers_unmatched", 0) + 1},
    )
    answers = rows(city.db, "SELECT reason FROM commands WHERE id = ?", command_id)
    assert answers and answers[0][0] != HOSTILE


def test_a_dispatcher_cannot_ask_in_another_name_and_a_broken_feed_changes_nothing(
    city: City, tmp_path: Path
) -> None:
    before = counters_now(city)
    tools = city.session("tools")
    tools.subscribe(topics.dispatch_reply("tools") + "/#", topics.dispatch_reply("tools"))
    forged = {
        "v": 1,
        "id": "forged-1",
        "t": time.time(),
        "by": "dispatcher",
        "request": {"type": "ack_alarm", "alarm": "x", "by": "dispatcher"},
    }
    tools.publish(topics.dispatch_request("tools"), json.dumps(forged).encode())
    tools.publish(topics.dispatch_request("tools"), b"\x00garbage")
    reply = None
    while reply is None:
        msg = tools.messages.get(timeout=WAIT)
        if msg.payload and b"forged-1" in msg.payload:
            reply = codec.decode(DispatchReply, bytes(msg.payload))
    assert not reply.ok
    stats(
        city,
        {
            "dispatch_impersonations": before.get("dispatch_impersonations", 0) + 1,
            "dispatch_bad": before.get("dispatch_bad", 0) + 1,
        },
    )
    # A feed of blank lines is refused with one line, and the good timetable stays.
    _, health = city.http("/healthz")
    trips = json.loads(health)["gtfs"]["trips"]
    blank = tmp_path / "blank"
    blank.mkdir()
    headers = {
        "agency": "agency_id,agency_name,agency_url,agency_timezone",
        "stops": "stop_id,stop_name,stop_lat,stop_lon",
        "routes": "route_id,agency_id,route_short_name,route_type",
        "trips": "route_id,service_id,trip_id",
        "stop_times": "trip_id,arrival_time,departure_time,stop_id,stop_sequence",
        "calendar": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,"
        "start_date,end_date",
    }
    for name, header in headers.items():
        (blank / f"{name}.txt").write_text(header + "\n\n\n\n")
    done = city.tool("import-gtfs", str(blank))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "not imported" in done.stderr.splitlines()[-1], done.stderr
    assert json.loads(city.http("/healthz")[1])["gtfs"]["trips"] == trips


def test_hostile_desired_documents_do_not_kill_the_agent_now_or_after_a_restart(
    city: City,
) -> None:
    rogue = city.session("central-2")
    watch = city.session("watch")
    drain(watch)
    deep = b'{"v":1,"bus":"bus-good","version":7,"config":{"a":' + b"[" * 100_000
    deep += b"]" * 100_000 + b"}}"
    huge = json.dumps({"v": 1, "bus": GOOD, "version": BIG}).encode()
    for doc in (deep, huge):
        assert rogue.publish(topics.desired(GOOD), doc, retain=True) == 0
    # The agent says it refused them, and lives.
    refusals = 0
    deadline = time.monotonic() + WAIT
    while refusals < 1:
        assert time.monotonic() < deadline, "the agent never reported a refusal"
        msg = watch.messages.get(timeout=WAIT)
        if msg.topic == topics.reported(GOOD) and msg.payload:
            reported = codec.decode(ReportedState, bytes(msg.payload))
            refusals += reported.error is not None or bool(
                {k for k, v in reported.counters.items() if "reject" in k and v}
            )
    assert city.alive("agent")
    # Killed and started again, it meets the retained document again: still alive, and a
    # genuine assignment through central replaces it.
    city.kill("agent")
    city.start_agent()
    assigned = city.tool("assign", GOOD, "--route", first_route(city))
    assert assigned.returncode == 0, assigned.stderr
    wanted = int(rows(city.db, "SELECT version FROM desired WHERE bus = ?", GOOD)[0][0])

    def applied() -> bool:
        msg = watch.messages.get(timeout=WAIT)
        if msg.topic != topics.reported(GOOD) or not msg.payload:
            return False
        return codec.decode(ReportedState, bytes(msg.payload)).version == wanted

    wait_for(applied, 2 * WAIT, "the agent applied central's assignment", every=0)
    assert city.alive("agent")


def first_route(city: City) -> str:
    return str(rows(city.db, "SELECT route_id FROM gtfs_routes ORDER BY route_id LIMIT 1")[0][0])


def portal(city: City, path: str, data: bytes | None = None, **headers: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{city.portal_port}{path}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_passenger_posts_markup_and_cross_site_forms(city: City) -> None:
    status, page = portal(city, "/feedback")
    assert status == 200
    token = re.search(r'name="token" value="([^"]+)"', page)
    assert token, page
    form = {"category": "other", "text": HOSTILE, "token": token.group(1)}
    body = urllib.parse.urlencode(form).encode()
    status, _ = portal(city, "/feedback", body, Origin=f"http://127.0.0.1:{city.portal_port}")
    assert status in (200, 303), status
    wait_for(
        lambda: rows(city.db, "SELECT 1 FROM events WHERE bus = ? AND data LIKE ?", GOOD, "%quit%"),
        WAIT,
        "the passenger's feedback at central",
    )
    # A page elsewhere posting to the portal is refused.
    for path in ("/accept", "/logout"):
        status, _ = portal(city, path, b"", Origin="http://evil.example")
        assert status == 403, (path, status)


async def test_afterwards_central_answers_gtfs_rt_serves_and_every_dashboard_screen_draws(
    city: City,
) -> None:
    assert city.alive("central") and city.alive("agent")
    listed = city.tool("messages")
    assert listed.returncode == 0, listed.stderr
    for kind in ("vehicle-positions", "trip-updates", "alerts"):
        assert city.http(f"/gtfs-rt/{kind}")[0] == 200, kind
        assert city.http(f"/gtfs-rt/{kind}?format=json")[0] == 200, kind

    config = dataclasses.replace(city.broker.central_config("dispatcher"), db=str(city.db))
    app = create_app(config, user="dispatcher")
    async with app.run_test(size=(200, 50)) as pilot:

        async def until(check: Any, what: str) -> None:
            deadline = time.monotonic() + WAIT
            while not check():
                assert app.is_running, "the dashboard exited"
                assert time.monotonic() < deadline, what
                await pilot.pause(0.2)

        table = app.screen.query_one(FleetTable)
        await until(lambda: {GOOD, EVIL} <= set(table.row_keys()), "both buses listed")
        await pilot.press("2")
        alarms = app.screen.query_one(AlarmTable)
        await until(lambda: alarms.row_count >= 2, "the bus's alarms listed")
        await pilot.press("3")
        await pilot.pause(0.5)
        await pilot.press("4", "b")
        reports = app.screen
        assert isinstance(reports, ReportsScreen)
        await until(lambda: reports.what == "feedback", "the feedback inbox")
        from textual.widgets import DataTable

        feedback = reports.query_one(DataTable)
        await until(
            lambda: any(
                HOSTILE in str(c) for i in range(feedback.row_count) for c in feedback.get_row_at(i)
            ),
            "the passenger's markup shown as text",
        )
        await pilot.press("5")
        await pilot.pause(0.5)
        app.post_message(BusAction(EVIL, "open"))
        await until(lambda: isinstance(app.screen, BusDetailScreen), "the bus detail")
        await pilot.pause(1.0)
        await pilot.press("question_mark")
        await pilot.pause(0.5)
        assert app.is_running
