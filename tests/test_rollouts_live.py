"""Rollouts live (issue 16): mosquitto, a real `busfleet central serve` process, the dispatcher's
command line (`busfleet central release ...`, each in a process of its own), and simulated
buses: MQTT clients that do what an agent's updater does on the wire. Each subscribes to its
retained desired document and, when it names a release, answers as the bus would: a working
bus publishes its reported state running the version and records `update_ok`; a broken one
records `update_failed` (severity 3, with the log tail) and keeps running the old version; a
silent one says nothing (still fetching).

What is asserted is what central publishes: the retained desired documents on the broker, the
alarms, and the answers of `release status` / `release list`. No timing is asserted.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker, mosquitto_path, run_mosquitto
from protocols import codec, topics
from protocols.release import EVENT_UPDATE_FAILED, EVENT_UPDATE_OK
from protocols.schemas import (
    Alarm,
    DesiredState,
    Event,
    EventBatch,
    Presence,
    ReleaseState,
    ReportedState,
)
from tests.fleet_helpers import Procs, first_message, wait_for

REPO = Path(__file__).resolve().parent.parent
WAIT = 60.0  # generous: a busy machine is slow; a condition never met fails anyway
OLD = "0.1.0"


@pytest.fixture(autouse=True)
def _mosquitto_is_installed() -> None:
    assert mosquitto_path(), "mosquitto is not installed (./run setup installs it)"


@dataclass
class SimBus:
    """One bus on the broker, as its agent's link and updater behave: `mode` is how its
    update of a wanted release goes (ok, broken, silent)."""

    broker: Broker
    bus: str
    mode: str = "ok"
    running: str = OLD
    seq: int = 0
    desired: list[DesiredState] = field(default_factory=list)
    client: paho.Client | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def connect(self) -> None:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.bus, protocol=paho.MQTTv5)
        gone = Presence(bus=self.bus, online=False, session=1, t=time.time())
        c.will_set(topics.presence(self.bus), codec.encode(gone), qos=1, retain=True)
        c.on_connect = lambda cl, *_: cl.subscribe(topics.desired(self.bus), qos=1)
        c.on_message = self._on_desired
        self.client = c  # before the loop runs: a retained desired document comes at once
        c.connect(self.broker.host, self.broker.port)
        c.loop_start()
        here = Presence(bus=self.bus, online=True, session=1, t=time.time())
        c.publish(topics.presence(self.bus), codec.encode(here), qos=1, retain=True)
        self.report(0)

    def disconnect(self) -> None:
        assert self.client is not None
        gone = Presence(bus=self.bus, online=False, session=1, t=time.time())
        self.client.publish(topics.presence(self.bus), codec.encode(gone), qos=1, retain=True)
        self.client.loop_stop()
        self.client.disconnect()
        self.client = None

    def report(self, version: int, **release: str) -> None:
        assert self.client is not None
        state = ReleaseState(running=self.running, slot="a", **release)
        doc = ReportedState(bus=self.bus, version=version, t=time.time(), release=state)
        self.client.publish(topics.reported(self.bus), codec.encode(doc), qos=1, retain=True)

    def record(self, kind: str, severity: int, **data: str) -> None:
        assert self.client is not None
        self.seq += 1
        event = Event(seq=self.seq, t=time.time(), kind=kind, severity=severity, data=data)
        batch = EventBatch(bus=self.bus, events=[event])
        self.client.publish(topics.events(self.bus), codec.encode(batch), qos=1)

    def _on_desired(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        doc = codec.decode(DesiredState, msg.payload)
        with self.lock:
            self.desired.append(doc)
            ref = doc.release
            if ref is None or ref.version == self.running or self.mode == "silent":
                self.report(doc.version)
                return
            if self.mode == "broken":
                self.record(
                    EVENT_UPDATE_FAILED, 3, version=ref.version, previous=self.running,
                    reason="not healthy in 300 s", log_tail="Traceback: boom",
                )  # fmt: skip
                self.report(doc.version, wanted=ref.version, phase="failed", error="rolled back")
                return
            previous, self.running = self.running, ref.version
            self.record(EVENT_UPDATE_OK, 0, version=ref.version, previous=previous, slot="b")
            self.report(doc.version)


@dataclass
class City:
    broker: Broker
    workdir: Path

    def cli(self, *argv: str) -> str:
        conn = ["--mqtt-host", self.broker.host, "--mqtt-port", str(self.broker.port)]
        done = subprocess.run(
            [sys.executable, "-m", "busfleet.cli", "central", *argv[:2], *conn, *argv[2:]],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, f"{argv}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def status(self, rollout: str) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.cli("release", "status", rollout, "--json"))
        return status

    def buses(self, *names: str, mode: str = "ok") -> list[SimBus]:
        out = [SimBus(self.broker, name, mode) for name in names]
        for bus in out:
            bus.connect()
        return out

    def desired_release(self, bus: str) -> str | None:
        """The release in the bus's retained desired document (None: no document, or none)."""
        try:
            payload = first_message(self.broker, topics.desired(bus), 2.0)
        except queue.Empty:
            return None
        ref = codec.decode(DesiredState, payload).release
        return None if ref is None else ref.version

    def halted_alarms(self, rollout: str) -> list[Alarm]:
        got: list[Alarm] = []
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.on_connect = lambda c, *_: c.subscribe(topics.all_alarms(), qos=1)
        client.on_message = lambda _c, _u, m: got.append(codec.decode(Alarm, m.payload))
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        time.sleep(1.0)  # the retained alarms come at once; this only collects them
        client.loop_stop()
        client.disconnect()
        return [a for a in got if a.kind == "rollout_halted" and a.subject == rollout]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    workdir = tmp_path_factory.mktemp("rollouts")
    with run_mosquitto(workdir / "mosquitto") as broker:
        procs = Procs(workdir, broker.port)
        try:
            procs.central("central", "--mqtt-host", broker.host)
            first_message(broker, topics.central_stats(), 30)  # central is subscribed
            yield City(broker, workdir)
        finally:
            procs.close()


def rollout_id(out: str) -> str:
    return str(json.loads(out.strip().splitlines()[-1])["rollout"])


def test_waves_advance_as_buses_update_and_an_offline_bus_updates_when_it_returns(
    city: City,
) -> None:
    names = ("wa-1", "wa-2", "wa-3", "wa-4")
    buses = city.buses(*names)
    city.cli("group", "set", "depot-a", *names)
    buses[3].disconnect()  # wa-4, in the last wave, is away (a tunnel, the depot)
    out = city.cli("release", "rollout", "0.2.0", "--to", "group:depot-a", "--waves", "1,50%,100%")
    rollout = rollout_id(out)
    assert "wave 1 given to 1" in out
    wait_for(lambda: city.status(rollout)["updated"] == 3, WAIT, "waves 1 and 2 done, wa-3 updated")
    status = city.status(rollout)
    assert (status["state"], status["wave"], status["waves"]) == ("running", 3, 3)
    assert [b["state"] for b in status["bus_states"]] == ["updated"] * 3 + ["assigned"]
    # The offline bus's retained document waits for it with the release ...
    assert city.desired_release("wa-4") == "0.2.0"
    assert buses[3].desired == []  # ... which it has not seen
    buses[3].connect()
    wait_for(lambda: city.status(rollout)["state"] == "done", WAIT, "the rollout done")
    assert buses[3].running == "0.2.0" and buses[3].desired[-1].release is not None
    table = city.cli("release", "list", "--json")
    runs = {r["bus"]: r["running"] for r in map(json.loads, table.splitlines())}
    assert all(runs[n] == "0.2.0" for n in names)
    for bus in buses:
        bus.disconnect()


def test_a_broken_release_halts_at_halt_on_and_the_next_waves_never_get_it(city: City) -> None:
    names = ("wb-1", "wb-2", "wb-3", "wb-4")
    buses = [*city.buses("wb-1", mode="broken"), *city.buses(*names[1:])]
    out = city.cli(
        "release", "rollout", "0.3.0", "--to", *names, "--waves", "1,50%,100%", "--halt-on", "1"
    )
    rollout = rollout_id(out)
    wait_for(lambda: city.status(rollout)["state"] == "halted", WAIT, "the rollout halted")
    status = city.status(rollout)
    assert (status["failed"], status["pending"], status["wave"]) == (1, 3, 1)
    assert "wb-1: not healthy in 300 s" in status["halted_reason"]
    [alarm] = wait_for(lambda: city.halted_alarms(rollout), WAIT, "the rollout_halted alarm")
    assert alarm.bus == "wb-1" and alarm.state == "active" and alarm.severity == 3
    time.sleep(3.0)  # a few of the rollout task's ticks: it must assign nothing more
    assert city.status(rollout)["state"] == "halted"
    assert [city.desired_release(n) for n in names] == ["0.3.0", None, None, None]
    assert all(not b.desired for b in buses[1:])  # nothing was ever sent to them
    assert len(city.halted_alarms(rollout)) == 1
    for bus in buses:
        bus.disconnect()


def test_a_cancelled_rollout_assigns_no_further_wave(city: City) -> None:
    names = ("wc-1", "wc-2")
    buses = [*city.buses("wc-1", mode="silent"), *city.buses("wc-2")]
    rollout = rollout_id(
        city.cli("release", "rollout", "0.4.0", "--to", *names, "--waves", "1,100%")
    )
    assert city.desired_release("wc-1") == "0.4.0"
    out = city.cli("release", "cancel", rollout)
    assert "cancelled at wave 1 of 2" in out
    buses[0].mode = "ok"  # it updates after all (it keeps the release it was given) ...
    buses[0].running = "0.4.0"
    buses[0].report(1)
    time.sleep(3.0)  # a few ticks
    status = city.status(rollout)
    assert (status["state"], status["pending"]) == ("cancelled", 1)
    assert city.desired_release("wc-2") is None  # ... and the next wave never comes
    text = city.cli("release", "status")
    assert f"{rollout}  0.4.0  cancelled  wave 1/2" in text
    for bus in buses:
        bus.disconnect()
