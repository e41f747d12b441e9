"""A bus updates its own software (issue 16), end to end: real releases of this project, real
slots (virtual environments), the real launcher as systemd runs it, a real agent in each
slot, a real mosquitto and central's service.

Central's wish is a retained desired document that names a release, published as central
publishes it; the agent takes the release tar from a folder (BUSFLEET_DEV_RELEASES: the TUF
fetch is tests/test_release_*.py's, and the path through central's repository comes once both
are on main). The test plays systemd: it starts the launcher, cuts the power (kill -9 of the
launcher's whole session, agent included) and starts it again.

Each install is a real `python -m venv` + `pip install` of ~50 wheels (~10 s on a busy
machine), so one bus goes through the whole story: 0.1.0 installed by hand, 0.2.0 by the
agent (switch, trial, commit), 0.3.0 (broken) cut mid-install, installed again, cut right
after the switch, then started, failing, rolled back to 0.2.0 and reported to central.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker
from busfleet.broker.provision import agent_toml
from busfleet.cli import main
from onboard.update.launcher import FAILURE_FILE, read_state, slot_version
from onboard.update.runtime import DEV_RELEASES
from onboard.update.settings import UpdateSection
from protocols import codec, topics
from protocols.release import target_name
from protocols.schemas import DesiredState, ReleaseRef, ReleaseState, ReportedState
from tests import release_helpers
from tests.fleet_helpers import central_config, central_running, rows, wait_for
from tests.release_helpers import BROKEN_SAYS
from tests.test_remote_config import agent_config

releases = release_helpers.releases
BUS = "bus-c1"  # tests/test_remote_config.py's agent settings, for this test's own broker
PYTHON = str(getattr(sys, "_base_executable", sys.executable))  # as /usr/bin/python3
WAIT = 120.0  # an install and a start or two on a busy machine; a hang fails anyway


class LaunchedBus:
    """One bus as systemd runs it: `python3 launcher.py --slots ... --config agent.toml`,
    watched from outside (its reported state on the broker, its slots directory)."""

    def __init__(self, broker: Broker, workdir: Path, releases: Path) -> None:
        self.broker = broker
        self.slots = workdir / "opt" / "slots"
        self.launcher = workdir / "opt" / "launcher.py"
        self.toml = workdir / "agent.toml"
        config = agent_config(broker, workdir / "bus")
        config = dataclasses.replace(
            config,
            update=UpdateSection(health_timeout_s=60),
            # Telemetry sent at once (not every 10 s): its receipt is part of the health proof.
            telemetry=dataclasses.replace(config.telemetry, send_every_s=0.5),
        )
        self.toml.write_text(agent_toml(config))
        self.log_path = workdir / "launcher.log"
        self.releases = releases
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: ReportedState | None = None
        self.desired = 0
        self.watcher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.watcher.on_connect = lambda c, *_: c.subscribe(topics.reported(BUS), qos=1)
        self.watcher.on_message = self._on_reported
        self.watcher.connect(broker.host, broker.port)
        self.watcher.loop_start()

    def _on_reported(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.payload:
            self.state = codec.decode(ReportedState, bytes(msg.payload))

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "one launcher at a time"
        self.state = None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    PYTHON,
                    str(self.launcher),
                    "--slots",
                    str(self.slots),
                    "--config",
                    str(self.toml),
                ],
                stderr=log,
                stdout=subprocess.DEVNULL,
                env={**os.environ, DEV_RELEASES: str(self.releases)},
                start_new_session=True,
            )

    def power_cut(self) -> None:
        """kill -9 of the launcher and everything it started."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def release(self, ready: Callable[[ReleaseState], bool], what: str) -> ReleaseState:
        """The reported release state once `ready`; fails when the launcher exits first."""

        def check() -> ReleaseState | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the launcher exited ({self.proc.returncode}): {self.log()}")
            state = self.state
            release = state.release if state is not None else None
            return release if release is not None and ready(release) else None

        try:
            found = wait_for(check, WAIT, what, every=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last {self.state}\n{self.log()}") from None
        assert found is not None
        return found

    def want(self, version: str) -> None:
        """Central names a release in the bus's retained desired document."""
        self.desired += 1
        ref = ReleaseRef(version=version, target=target_name(version))
        doc = DesiredState(bus=BUS, version=self.desired, release=ref)
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            client.publish(
                topics.desired(BUS), codec.encode(doc), qos=1, retain=True
            ).wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()

    def slot_names(self) -> list[str]:
        return sorted(p.name for p in self.slots.iterdir() if p.is_dir())

    def log(self) -> str:
        return self.log_path.read_text()[-6000:] if self.log_path.exists() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.power_cut()
        self.watcher.loop_stop()
        self.watcher.disconnect()


@pytest.fixture
def bus(mosquitto: Broker, tmp_path: Path, releases: Path) -> Iterator[LaunchedBus]:
    the_bus = LaunchedBus(mosquitto, tmp_path, releases)
    try:
        yield the_bus
    finally:
        the_bus.close()


def events(db: Path, kind: str) -> list[tuple[int, dict[str, Any]]]:
    found = rows(db, "SELECT severity, data FROM events WHERE bus = ? AND kind = ?", BUS, kind)
    return [(severity, json.loads(data)) for severity, data in found]


def test_a_bus_updates_itself_rolls_a_broken_release_back_and_survives_power_cuts(
    mosquitto: Broker, tmp_path: Path, bus: LaunchedBus, releases: Path
) -> None:
    config = central_config(mosquitto, tmp_path / "central.sqlite")
    with central_running(config) as db:
        # The first slot, installed by hand (deploy/README.md, "On the bus").
        first = ["slots", "install", str(releases / target_name("0.1.0")), "--slots"]
        assert main([*first, str(bus.slots), "--launcher", str(bus.launcher)]) == 0
        bus.start()
        now = bus.release(lambda r: r.running == "0.1.0", "0.1.0 running")
        assert now.phase == "idle" and slot_version(now.slot) == "0.1.0" and now.previous == ""

        # 0.2.0: installed beside it, switched to, started on trial by the launcher; the new
        # process proves itself (connected, desired state, telemetry stored) and commits.
        bus.want("0.2.0")
        now = bus.release(lambda r: r.running == "0.2.0" and r.phase == "idle", "0.2.0 committed")
        assert (now.previous, slot_version(now.slot), now.error) == ("0.1.0", "0.2.0", "")
        state = read_state(bus.slots)
        assert (state.current, state.trial) == (now.slot, None)
        assert slot_version(state.previous) == "0.1.0"
        [(severity, data)] = wait_for(lambda: events(db, "update_ok"), 60, "update_ok at central")
        assert data == {"version": "0.2.0", "previous": "0.1.0", "slot": now.slot}
        assert "starting " + now.slot + " on trial" in bus.log()

        # 0.3.0 (broken). A power cut in the middle of its install: a partial slot only.
        bus.want("0.3.0")
        wait_for(lambda: list(bus.slots.glob(".tmp-0.3.0-*/bin")), WAIT, "the 0.3.0 install")
        bus.power_cut()
        assert read_state(bus.slots).current == now.slot  # still 0.2.0
        bus.start()  # systemd's Restart=always: the launcher removes the partial install
        bus.release(lambda r: r.running == "0.2.0", "0.2.0 back after the cut")
        # It installs 0.3.0 again and switches; cut right after the switch.
        wait_for(lambda: read_state(bus.slots).trial, WAIT, "the switch to 0.3.0")
        bus.power_cut()
        switched = read_state(bus.slots)
        assert slot_version(switched.current) in ("0.3.0", "0.2.0")  # one of the two
        bus.start()
        # 0.3.0 starts on trial, fails at once; the launcher rolls back to 0.2.0 by itself and
        # 0.2.0 reports the failure with the broken version's last lines.
        now = bus.release(lambda r: r.running == "0.2.0" and r.phase == "failed", "rolled back")
        assert now.wanted == "0.3.0" and "exited with code 1" in now.error
        [(severity, data)] = wait_for(
            lambda: events(db, "update_failed"), 60, "update_failed at central"
        )
        assert severity == 3 and data["version"] == "0.3.0" and data["previous"] == "0.2.0"
        assert "exited with code 1 before it proved itself healthy" in data["reason"]
        assert BROKEN_SAYS in data["log_tail"]
        state = read_state(bus.slots)
        assert (state.current, state.trial) == (now.slot, None)
        assert "0.3.0" in state.failed
        wait_for(lambda: not (bus.slots / FAILURE_FILE).exists(), 30, "the record cleared")
        assert [slot_version(n) for n in bus.slot_names()] == ["0.2.0"]
        assert bus.stop() == 0
