"""Remote configuration (issue 14): central sets agent settings, the bus judges, applies, keeps
them and reports what it runs and what it refused.

Live tests: real mosquitto, central's service in a thread (`central_running`), the agent as
systemd runs it (a `busfleet agent` child process, run again after it exits for a restart), the
tools the real CLI (`busfleet central config`); the test watches the bus from outside: its
reported state on the broker and its agent.sqlite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import queue
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker, free_port
from busfleet.broker.provision import agent_toml
from busfleet.cli import main
from busfleet.commands.config import parse_value
from central import client
from central.config import CentralConfig
from onboard.agent import Agent
from onboard.config import (
    AgentConfig,
    BusSection,
    CanSection,
    GpsSection,
    MqttSection,
    TelemetrySection,
    parse_config,
)
from onboard.errors import ConfigError
from onboard.remote_config import LIVE, judge
from protocols import codec, topics
from protocols.config_keys import refusal
from protocols.requests import ShowConfig
from protocols.schemas import DesiredState, ReportedState, Scalar
from tests.conftest import DATA
from tests.fleet_helpers import Procs, central_config, central_running, cli_conn, rows, wait_for

BUS = "bus-c1"
BASE = AgentConfig(mqtt=MqttSection(insecure_dev_broker=True))


def agent_config(broker: Broker, data_dir: Path) -> AgentConfig:
    config = AgentConfig(
        bus=BusSection(id=BUS, data_dir=str(data_dir)),
        mqtt=MqttSection(port=broker.port, backoff_max_s=1.0, insecure_dev_broker=True),
        # A replayed GPS log (looped): the agent stores samples, at its sampling interval.
        gps=GpsSection(source="replay", replay_path=str(DATA / "nmea" / "ublox-8.log")),
        can=CanSection(interface="none"),
        telemetry=TelemetrySection(interval_s=0.5),
    )
    off = {"enabled": False}
    return dataclasses.replace(
        config,
        display=dataclasses.replace(config.display, **off),
        driver=dataclasses.replace(config.driver, **off),
        ads=dataclasses.replace(config.ads, **off),
    )


# -- the rules, without a broker ------------------------------------------------------------------


def test_the_bus_judges_each_key_by_the_agent_config_schema_and_says_why() -> None:
    accepted, refused = judge(
        BASE,
        {
            "telemetry.send_every_s": 5,  # an int where seconds are floats, as agent.toml allows
            "portal.max_clients": 40,
            "telemetry.codec": "xml",
            "portal.max_clients_x": 3,
            "telemetry.batch_max": True,
            "outbox.budget_mb": -1.0,
            "mqtt.host": "203.0.113.9",
            "bus.data_dir": "/tmp",
            "journey.gtfs": "/tmp/feed.zip",
            "nosection": 1,
        },
    )
    assert accepted == {"telemetry.send_every_s": 5, "portal.max_clients": 40}
    assert "telemetry.codec 'xml' unknown" in refused["telemetry.codec"]
    assert "no such key" in refused["portal.max_clients_x"]
    assert "must be int, not bool" in refused["telemetry.batch_max"]
    assert "out of range" in refused["outbox.budget_mb"]
    assert refused["mqtt.host"].startswith("never set remotely: the link to city hall")
    assert refused["bus.data_dir"].startswith("never set remotely: the bus's identity")
    assert "path to a file" in refused["journey.gtfs"]
    assert refused["nosection"].startswith("not a key")


def test_the_display_language_is_a_remote_setting_applied_live() -> None:
    accepted, refused = judge(
        BASE, {"display.language": "en", "display.cycle_s": 1, "display.port": 9000}
    )
    assert accepted == {"display.language": "en", "display.port": 9000}
    assert "out of range" in refused["display.cycle_s"]
    accepted, refused = judge(BASE, {"display.language": "fr,de"})
    assert accepted == {} and "give de, en or de,en" in refused["display.language"]
    assert {"display.language", "display.cycle_s"} <= set(LIVE)
    assert "display.port" not in LIVE  # a new port needs the server started again


def test_agent_toml_meets_the_same_bounds_as_a_remote_setting() -> None:
    text = "[mqtt]\ninsecure_dev_broker = true\n[telemetry]\nsend_every_s = -1\n"
    with pytest.raises(ConfigError, match="out of range") as info:
        parse_config(text)
    assert info.value.key == "telemetry.send_every_s"
    with pytest.raises(ConfigError, match="must be int, not bool"):
        parse_config("[mqtt]\ninsecure_dev_broker = true\n[portal]\nmax_clients = true\n")


def test_central_and_the_bus_share_the_forbidden_keys_and_the_key_form() -> None:
    assert refusal("telemetry.send_every_s", 5.0) is None
    assert refusal("mqtt.keepalive_s", 20) is None  # the link's timing, not where it goes
    for key in ("mqtt.password_file", "mqtt.insecure_dev_broker", "bus.id", "portal.tls_key"):
        assert (refusal(key, "x") or "").startswith("never set remotely"), key
    # The software's trust anchors: a remote value could make the bus install anyone's code.
    for key in ("update.repo_url", "update.trusted_root", "logs.file"):
        assert (refusal(key, "x") or "").startswith("never set remotely"), key
    assert refusal("update.maintenance_window", "02:00-04:00") is None
    assert refusal("Telemetry.send_every_s", 1) is not None
    assert refusal("telemetry.send_every_s", float("nan")) == "number out of range"
    assert refusal("display.language", [1]) == "not a text, number or true/false"


def test_the_tool_reads_values_as_agent_toml_does() -> None:
    assert parse_value("5") == 5 and parse_value("2.5") == 2.5
    assert parse_value("true") is True and parse_value('"5"') == "5"
    assert parse_value("nftables") == "nftables"
    with pytest.raises(ValueError, match="a setting is"):
        parse_value("[1, 2]")


# -- live: central, the broker, a real agent process ----------------------------------------------


class Bus:
    """One bus as systemd runs it: `busfleet agent --config agent.toml` child processes (one at
    a time), watched from outside: its reported state on the broker (a paho client, as central
    hears it) and its agent.sqlite (read-only)."""

    def __init__(self, broker: Broker, workdir: Path) -> None:
        self.broker = broker
        self.data_dir = workdir / "bus"
        self.toml = workdir / "agent.toml"
        self.toml.write_text(agent_toml(agent_config(broker, self.data_dir)))
        self.procs = Procs(workdir, broker.port)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.state: ReportedState | None = None
        self.watcher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.watcher.on_connect = lambda c, *_: c.subscribe(topics.reported(BUS), qos=1)
        self.watcher.on_message = self._on_reported
        self.watcher.connect(broker.host, broker.port)
        self.watcher.loop_start()

    def _on_reported(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.payload:
            self.state = codec.decode(ReportedState, bytes(msg.payload))

    def start(self) -> subprocess.Popen[bytes]:
        """Run the agent (again, as systemd would), until its link to the broker is up."""
        assert self.proc is None or self.proc.poll() is not None, "one agent at a time"
        self.starts += 1
        self.state = None  # only what this run reports from here on
        self.proc = self.procs.start("agent", "agent", "--config", str(self.toml))
        self.reported(lambda s: True, "the agent's first report")
        return self.proc

    def running(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        return self.proc

    def reported(self, ready: Callable[[ReportedState], bool], what: str) -> ReportedState:
        """The reported state once `ready(state)`; fails when the agent exits first."""

        def check() -> ReportedState | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the agent exited ({self.proc.returncode}): {self.log()}")
            state = self.state
            return state if state is not None and ready(state) else None

        state = wait_for(check, 60, what, every=0.05)
        assert state is not None
        return state

    def exited(self, what: str) -> int:
        """The agent's exit status, once it exits by itself."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the agent did not exit ({what}): {self.log()}") from None

    def stop(self) -> int:
        """SIGTERM, as systemd stops it: a real agent must end (not hang) and say goodbye."""
        proc = self.running()
        proc.send_signal(signal.SIGTERM)
        return self.exited("on SIGTERM")

    def kept(self) -> dict[str, Scalar]:
        """The remote configuration the bus keeps in agent.sqlite (for its next start)."""
        found = rows(self.data_dir / "agent.sqlite", "SELECT body FROM remote_config")
        return dict(msgspec.json.decode(found[0][0])) if found else {}

    def log(self) -> str:
        path = self.procs.workdir / "agent.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def close(self) -> None:
        self.watcher.loop_stop()
        self.watcher.disconnect()
        self.procs.close()


@pytest.fixture
def bus(mosquitto: Broker, tmp_path: Path) -> Iterator[Bus]:
    the_bus = Bus(mosquitto, tmp_path)
    try:
        yield the_bus
    finally:
        the_bus.close()


def cli(*argv: str) -> int:
    """The real CLI, in this thread (its own event loop)."""
    return main(list(argv))


def shown(config: CentralConfig) -> tuple[dict[str, Scalar], dict[str, dict[str, Scalar]]]:
    """`config show`'s answer: its result, and its rows by key."""
    reply = asyncio.run(client.ask(config, ShowConfig(bus=BUS), user="tester"))
    assert reply.ok, reply.error
    return reply.result, {str(row["key"]): row for row in reply.tables["config"]}


def rows_when(
    config: CentralConfig, ready: Callable[[dict[str, dict[str, Scalar]]], bool], what: str
) -> tuple[dict[str, Scalar], dict[str, dict[str, Scalar]]]:
    """`config show`'s answer once `ready(rows)` (central has the bus's report), else fail."""
    found: dict[str, dict[str, Scalar]] = {}
    for _ in range(300):
        result, found = shown(config)
        if ready(found):
            return result, found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {found}")


def state_of(key: str, state: str) -> Callable[[dict[str, dict[str, Scalar]]], bool]:
    return lambda rows: rows.get(key, {}).get("state") == state


def sample_gaps(data_dir: Path, since: float) -> list[float]:
    """The time between the telemetry samples the agent stored after `since` (wall clock)."""
    sql = "SELECT created FROM outbox WHERE kind = 'telemetry' AND created > ? ORDER BY seq"
    created = [r[0] for r in rows(data_dir / "agent.sqlite", sql, since)]
    return [b - a for a, b in itertools.pairwise(created)]


def test_a_setting_reaches_the_bus_applies_live_and_is_reported_as_running(
    mosquitto: Broker, tmp_path: Path, bus: Bus
) -> None:
    config = central_config(mosquitto, tmp_path / "central.sqlite")
    conn = cli_conn(mosquitto, tmp_path / "central.sqlite")
    with central_running(config):
        proc = bus.start()
        argv = ["telemetry.send_every_s=3", "telemetry.interval_s=0.25", "portal.max_clients=40"]
        assert cli("central", "config", "set", BUS, *argv, *conn) == 0
        state = bus.reported(lambda s: "telemetry.interval_s" in s.config, "applied live")
        applied_at = time.time()
        assert state.config == {
            "telemetry.send_every_s": 3.0,
            "telemetry.interval_s": 0.25,
            "portal.max_clients": 40,
        }
        assert state.config_refused == {} and state.counters["config_pending"] == 0
        # The sampling loop has the new interval: samples every 0.25 s, not 0.5 s (the
        # steady beat catches up after a late wake-up, so the median gap is the interval).
        gaps = wait_for(lambda: (g := sample_gaps(bus.data_dir, applied_at))[20:] and g, 60,
                        "samples at the new interval")  # fmt: skip
        assert statistics.median(gaps) < 0.4, gaps
        keys = [a.partition("=")[0] for a in argv]
        result, found = rows_when(
            config, lambda r: all(state_of(k, "running")(r) for k in keys), "running"
        )
        assert found["telemetry.send_every_s"]["running"] == 3.0
        assert found["telemetry.interval_s"]["running"] == 0.25
        assert found["portal.max_clients"] == {
            "key": "portal.max_clients",
            "desired": 40,
            "running": 40,
            "state": "running",
            "reason": "",
        }
        assert result["pending_restart"] == 0
        assert bus.kept() == {
            "telemetry.send_every_s": 3,
            "telemetry.interval_s": 0.25,
            "portal.max_clients": 40,
        }
        # Unset: agent.toml's value runs again, live (no restart), and is no longer kept.
        assert cli("central", "config", "set", BUS, "--unset", "telemetry.send_every_s", *conn) == 0
        state = bus.reported(lambda s: "telemetry.send_every_s" not in s.config, "unset live")
        assert state.config == {"telemetry.interval_s": 0.25, "portal.max_clients": 40}
        assert bus.kept() == {"telemetry.interval_s": 0.25, "portal.max_clients": 40}
        assert bus.running() is proc and bus.starts == 1, "live settings need no restart"
        assert bus.stop() == 0


def test_a_bad_value_and_a_forbidden_key_are_refused_and_reported_with_the_reason(
    mosquitto: Broker, tmp_path: Path, bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    config = central_config(mosquitto, tmp_path / "central.sqlite")
    conn = cli_conn(mosquitto, tmp_path / "central.sqlite")
    before = agent_config(mosquitto, bus.data_dir)
    with central_running(config):
        bus.start()
        # Central refuses a forbidden key itself: nothing is written, exit status 2.
        capsys.readouterr()
        assert cli("central", "config", "set", BUS, "mqtt.host=203.0.113.9", *conn) == 2
        assert "mqtt.host: never set remotely" in capsys.readouterr().err
        # Values are the bus's to judge: central sends them, the bus refuses.
        bad = ["telemetry.send_every_s=fast", "portal.max_clients=0", "gps.max_hdop=5"]
        assert cli("central", "config", "set", BUS, *bad, *conn) == 0
        _, found = rows_when(config, state_of("portal.max_clients", "refused"), "refused")
        assert found["telemetry.send_every_s"]["state"] == "refused"
        assert "must be float, not str" in str(found["telemetry.send_every_s"]["reason"])
        assert "out of range (1 to 100000)" in str(found["portal.max_clients"]["reason"])
        assert found["gps.max_hdop"]["state"] == "running"  # the good one beside them runs
        # The bus runs agent.toml's values for the refused keys, the good one beside them.
        state = bus.reported(lambda s: "gps.max_hdop" in s.config, "the bus's report")
        assert state.config == {
            "gps.max_hdop": 5.0,
            "portal.max_clients": before.portal.max_clients,
            "telemetry.send_every_s": before.telemetry.send_every_s,
        }
        assert bus.kept() == {"gps.max_hdop": 5}
        assert cli("central", "config", "show", BUS, *conn) == 0
        out = capsys.readouterr().out
        assert "portal.max_clients" in out and "refused" in out and "out of range" in out
        # A desired document that says forbidden keys anyway (an old central, a forged one):
        # the bus refuses them too and runs on as it was.
        applied = _retained(mosquitto, topics.desired(BUS), DesiredState)
        assert applied.version == state.version
        forged = {**applied.config, "bus.data_dir": "/tmp/x", "mqtt.insecure_dev_broker": False}
        doc = DesiredState(bus=BUS, version=applied.version + 1, config=forged)
        _publish_retained(mosquitto, topics.desired(BUS), codec.encode(doc))
        state = bus.reported(lambda s: "bus.data_dir" in s.config_refused, "refused")
        assert state.config_refused["bus.data_dir"].startswith("never set remotely")
        assert "TLS" in state.config_refused["mqtt.insecure_dev_broker"]
        assert not {"bus.data_dir", "mqtt.insecure_dev_broker"} & set(state.config)
        assert not {"bus.data_dir", "mqtt.insecure_dev_broker"} & set(bus.kept())
        assert state.error is None and state.version == doc.version  # the rest applies
        # Still the same agent on the same data_dir and broker (it reports here, from there).
        assert bus.starts == 1 and bus.running()
        assert (bus.data_dir / "agent.sqlite").exists() and not Path("/tmp/x/agent.sqlite").exists()
        assert bus.stop() == 0


def _retained(broker: Broker, topic: str, kind: type[DesiredState]) -> DesiredState:
    got: queue.Queue[bytes] = queue.Queue()
    reader = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    reader.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    reader.on_message = lambda _c, _u, m: got.put(bytes(m.payload))
    reader.connect(broker.host, broker.port)
    reader.loop_start()
    try:
        return codec.decode(kind, got.get(timeout=30))
    finally:
        reader.loop_stop()
        reader.disconnect()


def _publish_retained(broker: Broker, topic: str, payload: bytes) -> None:
    """Publish as another client would (an empty payload clears the retained message)."""
    forger = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    forger.connect(broker.host, broker.port)
    forger.loop_start()
    try:
        forger.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        forger.loop_stop()
        forger.disconnect()


def test_a_setting_that_needs_a_restart_restarts_the_agent_and_is_kept_through_restarts(
    mosquitto: Broker, tmp_path: Path, bus: Bus
) -> None:
    config = central_config(mosquitto, tmp_path / "central.sqlite")
    conn = cli_conn(mosquitto, tmp_path / "central.sqlite")
    kept = {"telemetry.send_every_s": 4, "ads.lookahead_days": 5, "mqtt.keepalive_s": 20}
    with central_running(config):
        bus.start()
        settings = [f"{k}={v}" for k, v in kept.items()]
        assert cli("central", "config", "set", BUS, *settings, *conn) == 0
        # No trip runs: the agent restarts by itself, as on central's restart command (its
        # run ends, the process exits with 0, and systemd's Restart=always runs it again).
        assert bus.exited("for ads.lookahead_days") == 0
        assert "restarting to apply remote settings: ads.lookahead_days" in bus.log()
        assert bus.kept() == kept
        # systemd runs it again: the same agent.sqlite and agent.toml; the kept settings run.
        bus.start()
        state = bus.reported(lambda s: "ads.lookahead_days" in s.config, "the kept settings")
        assert state.config == {**kept, "telemetry.send_every_s": 4.0}
        assert state.counters["config_pending"] == 0  # nothing waits: no second restart
        _, found = rows_when(config, state_of("ads.lookahead_days", "running"), "running")
        assert found["ads.lookahead_days"]["running"] == 5
        assert found["mqtt.keepalive_s"]["running"] == 20
        # A bad value now: refused, and the last good one runs on (and is kept).
        assert cli("central", "config", "set", BUS, "telemetry.send_every_s=-2", *conn) == 0
        state = bus.reported(lambda s: "telemetry.send_every_s" in s.config_refused, "refused")
        assert state.config["telemetry.send_every_s"] == 4.0
        assert bus.kept() == kept
        assert bus.starts == 2 and bus.running()
        assert bus.stop() == 0
    # A third start, with no central to hear from and no desired document on the broker: the
    # last good configuration, kept in agent.sqlite, still runs.
    _publish_retained(mosquitto, topics.desired(BUS), b"")
    bus.start()
    state = bus.reported(lambda s: "ads.lookahead_days" in s.config, "the kept settings")
    assert state.config == {**kept, "telemetry.send_every_s": 4.0}
    assert state.counters["config_pending"] == 0
    assert bus.stop() == 0


def test_a_restart_waits_until_no_trip_is_running(mosquitto: Broker, tmp_path: Path) -> None:
    """The rule itself, on a real agent.sqlite; no agent runs (nothing of it is started)."""
    agent = Agent(agent_config(mosquitto, tmp_path / "bus"))
    try:
        agent.remote_config.offer({"ads.lookahead_days": 7}, agent)
        assert agent.remote_config.pending == {"ads.lookahead_days"}
        assert agent.counters()["config_pending"] == 1
        answers = iter([True, True, False])
        asked: list[bool] = []

        def trip_running() -> bool:
            asked.append(next(answers))
            return asked[-1]

        restart = agent.remote.restart_requested
        run = agent.remote_config.run(restart, trip_running, poll_s=0.01)
        asyncio.run(asyncio.wait_for(run, 10))
        assert restart.is_set() and asked == [True, True, False]
    finally:
        agent.store.close()


# -- several buses at once: a group, all ----------------------------------------------------------


def retained_desired(
    broker: Broker, buses: list[str], ready: Callable[[DesiredState], bool], what: str
) -> dict[str, DesiredState]:
    """The retained desired document of each of `buses` on the broker, once each is `ready`."""
    docs: dict[str, DesiredState] = {}
    watcher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    watcher.on_connect = lambda c, *_: [c.subscribe(topics.desired(b), qos=1) for b in buses]

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.payload:
            doc = codec.decode(DesiredState, bytes(msg.payload))
            docs[doc.bus] = doc

    watcher.on_message = on_message
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    try:
        wait_for(lambda: all(b in docs and ready(docs[b]) for b in buses) or None, 30, what)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    return dict(docs)


def test_config_set_for_a_group_or_all_sets_each_bus_and_says_which(
    mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "central.sqlite"
    conn = cli_conn(mosquitto, db)
    with central_running(central_config(mosquitto, db)):
        assert cli("central", "group", "set", "depot", "bus-g2", "bus-g3", *conn) == 0
        assert cli("central", "config", "set", "bus-g1", "telemetry.batch_max=50", *conn) == 0
        capsys.readouterr()
        argv = ["central", "config", "set", "--group", "depot", "display.language=en", *conn]
        assert cli(*argv) == 0
        out = capsys.readouterr().out
        assert "bus-g2: desired state version" in out and "bus-g3: desired state" in out
        assert "bus-g1" not in out
        docs = retained_desired(
            mosquitto, ["bus-g2", "bus-g3"], lambda d: "display.language" in d.config, "group"
        )
        assert {b: d.config for b, d in docs.items()} == {
            "bus-g2": {"display.language": "en"},
            "bus-g3": {"display.language": "en"},
        }
        # An unknown group, or a forbidden key for all: refused whole, nothing written.
        assert cli("central", "config", "set", "--group", "nope", "display.language=de", *conn) == 2
        assert "no group 'nope'" in capsys.readouterr().err
        argv = ["central", "config", "set", "--all", "bus.id=x", "display.language=de", *conn]
        assert cli(*argv) == 2
        assert "never set remotely" in capsys.readouterr().err
        # --all: every bus central knows (here: by their desired documents).
        assert cli("central", "config", "set", "--all", "--unset", "display.language", *conn) == 0
        out = capsys.readouterr().out
        assert sorted(line.split(":")[0] for line in out.splitlines()) == [
            "bus-g1", "bus-g2", "bus-g3"
        ]  # fmt: skip
        docs = retained_desired(
            mosquitto,
            ["bus-g1", "bus-g2", "bus-g3"],
            lambda d: "display.language" not in d.config,
            "all",
        )
    assert {b: d.config for b, d in docs.items()} == {
        "bus-g1": {"telemetry.batch_max": 50},
        "bus-g2": {},
        "bus-g3": {},
    }


async def display_state(port: int) -> dict[str, Any]:
    """The state the agent's passenger display sends a page (its first Server-Sent Event)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/display/events") as resp,
    ):
        async for line in resp.content:
            if line.startswith(b"data: "):
                state: dict[str, Any] = msgspec.json.decode(line[6:])["state"]
                return state
    raise AssertionError("the display sent no state")


def test_the_display_language_set_from_central_reaches_the_pages_without_a_restart(
    mosquitto: Broker, tmp_path: Path, bus: Bus
) -> None:
    port = free_port()
    config = agent_config(mosquitto, bus.data_dir)
    display = dataclasses.replace(config.display, enabled=True, port=port, language="de")
    bus.toml.write_text(agent_toml(dataclasses.replace(config, display=display)))
    central = central_config(mosquitto, tmp_path / "central.sqlite")
    conn = cli_conn(mosquitto, tmp_path / "central.sqlite")
    with central_running(central):
        proc = bus.start()
        shown = wait_for(lambda: _try_state(port), 30, "the display's first state")
        assert shown["languages"] == ["de"] and shown["cycle_s"] == 8.0
        argv = ["display.language=en,de", "display.cycle_s=4"]
        assert cli("central", "config", "set", BUS, *argv, *conn) == 0
        state = bus.reported(lambda s: "display.language" in s.config, "applied")
        assert state.config == {"display.language": "en,de", "display.cycle_s": 4.0}
        assert state.config_refused == {} and state.counters["config_pending"] == 0
        shown = asyncio.run(display_state(port))
        assert shown["languages"] == ["en", "de"] and shown["cycle_s"] == 4.0
        assert bus.running() is proc and bus.starts == 1, "the language needs no restart"
        assert bus.kept() == {"display.language": "en,de", "display.cycle_s": 4}
        assert bus.stop() == 0


def _try_state(port: int) -> dict[str, Any] | None:
    try:
        return asyncio.run(display_state(port))
    except aiohttp.ClientConnectionError:
        return None  # the display is not listening yet
