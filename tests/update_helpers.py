"""Real buses updating through central's real release repository (issue 16), for
tests/test_update_agent.py and tests/test_update_fleet.py.

`signed_repo` makes a TUF repository with `busfleet release init` and signs releases into it
with `busfleet release add`. `Central` is a real `busfleet central serve` process whose
central.toml names that repository (`release_repo`, served at /releases/ on `http_port`), with
the dispatcher's command line (`busfleet central ...`, each in a process of its own).
`LaunchedBus` is one bus as systemd runs it: `python3 launcher.py --slots ... --config
agent.toml` (the test plays Restart=always: it starts the launcher again after a power cut),
its agent.toml's [update] pointing at central's repository and trusting the repository's
root.json, watched from outside (its reported state and presence on the broker, its slots).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker.launch import Broker
from busfleet.broker.provision import agent_toml
from busfleet.cli import main
from onboard.update.settings import UpdateSection
from protocols import codec, topics
from protocols.release import target_name
from protocols.schemas import DesiredState, Presence, ReleaseRef, ReleaseState, ReportedState
from tests.fleet_helpers import first_message, rows, wait_for
from tests.test_remote_config import agent_config

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(getattr(sys, "_base_executable", sys.executable))  # as /usr/bin/python3
WAIT = 150.0  # an install and a start or two on a busy machine; a hang fails anyway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed_repo(releases: Path, repo: Path, versions: tuple[str, ...]) -> Path:
    """`busfleet release init REPO` and `busfleet release add REPO TAR` of each version's tar
    in `releases`; returns the root.json buses are provisioned with."""
    assert main(["release", "init", str(repo)]) == 0
    for version in versions:
        sign(repo, releases / target_name(version))
    root = repo / "metadata" / "root.json"
    assert root.is_file()
    return root


def install_all(buses: list[LaunchedBus], tar: Path) -> None:
    """The first slot of each bus, by hand, at the same time (`busfleet slots install` in a
    process per bus: the depot installs a row of buses)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "busfleet.cli", *bus.install_args(tar)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for bus in buses
    ]
    for bus, proc in zip(buses, procs, strict=True):
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{bus.bus}: slots install: {out.decode(errors='replace')}"


def sign(repo: Path, tar: Path) -> None:
    assert main(["release", "add", str(repo), str(tar)]) == 0


class Central:
    """`busfleet central serve --config central.toml` with the release repository `repo`."""

    def __init__(self, broker: Broker, workdir: Path, repo: Path) -> None:
        self.broker = broker
        self.workdir = workdir
        self.repo = repo
        self.db = workdir / "central.sqlite"
        self.http_port = free_port()
        self.toml = workdir / "central.toml"
        self.toml.write_text(
            "[central]\n"
            f"db = {json.dumps(str(self.db))}\n"
            f"mqtt_host = {json.dumps(broker.host)}\n"
            f"mqtt_port = {broker.port}\n"
            f"release_repo = {json.dumps(str(repo))}\n"
            'http_host = "127.0.0.1"\n'
            f"http_port = {self.http_port}\n"
        )
        self.log_path = workdir / "central.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def repo_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/releases"

    def start(self) -> None:
        conf = [str(self.toml)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "busfleet.cli", "central", "serve", "--config", *conf],
                stderr=log,
                stdout=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        first_message(self.broker, topics.central_stats(), 60)  # subscribed and publishing
        wait_for(self._serves_releases, 60, "central serving /releases/")

    def _serves_releases(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"central exited ({self.proc.returncode}): {self.log()}")
        try:
            with urllib.request.urlopen(f"{self.repo_url}/metadata/timestamp.json", timeout=5):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def cli(self, *argv: str) -> str:
        """`busfleet central A B --mqtt-host .. --mqtt-port .. REST...`: its output (exit 0)."""
        conn = ["--mqtt-host", self.broker.host, "--mqtt-port", str(self.broker.port)]
        done = subprocess.run(
            [sys.executable, "-m", "busfleet.cli", "central", *argv[:2], *conn, *argv[2:]],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert done.returncode == 0, f"{argv}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def rollout(self, version: str, *args: str) -> dict[str, Any]:
        """A rollout by the real command line: its last line (the rollout's id, `assigned`)."""
        out = self.cli("release", "rollout", version, *args)
        started: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return started

    def status(self, rollout: str) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.cli("release", "status", rollout, "--json"))
        return status

    def events(self, bus: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
        """(severity, data) of each event of `kind` central stored for `bus`."""
        sql = "SELECT severity, data FROM events WHERE bus = ? AND kind = ? ORDER BY seq"
        return [(sev, json.loads(data)) for sev, data in rows(self.db, sql, bus, kind)]

    def log(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class TopicLog:
    """Every message on `patterns` from now on (retained ones first), as (topic, payload)."""

    def __init__(self, broker: Broker, *patterns: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe([(p, 1) for p in patterns])
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self.messages.append((msg.topic, bytes(msg.payload)))

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload in list(self.messages) if t == topic and payload]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def update_section(central: Central, root: Path, health_timeout_s: float = 90) -> UpdateSection:
    """agent.toml [update]: central's repository, trusting its root.json (provisioning)."""
    return UpdateSection(
        repo_url=central.repo_url, trusted_root=str(root), health_timeout_s=health_timeout_s
    )


class LaunchedBus:
    """One bus as systemd runs it: `python3 launcher.py --slots ... --config agent.toml`,
    watched from outside (its reported state and presence on the broker, its slots)."""

    def __init__(
        self,
        broker: Broker,
        workdir: Path,
        bus: str,
        update: UpdateSection,
        env: dict[str, str] | None = None,
    ) -> None:
        self.broker = broker
        self.env = {**os.environ, **(env or {})}
        self.bus = bus
        self.slots = workdir / "opt" / "slots"
        self.launcher = workdir / "opt" / "launcher.py"
        self.toml = workdir / "agent.toml"
        workdir.mkdir(parents=True, exist_ok=True)
        config = agent_config(broker, workdir / "bus")
        config = dataclasses.replace(
            config,
            bus=dataclasses.replace(config.bus, id=bus),
            update=update,
            # Telemetry sent at once (not every 10 s): its receipt is part of the health proof.
            telemetry=dataclasses.replace(config.telemetry, send_every_s=0.5),
        )
        self.toml.write_text(agent_toml(config))
        self.log_path = workdir / "launcher.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: ReportedState | None = None
        self.presence: Presence | None = None
        self.desired = 0
        self.watcher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.watcher.on_connect = lambda c, *_: c.subscribe(
            [(topics.reported(bus), 1), (topics.presence(bus), 1)]
        )
        self.watcher.on_message = self._on_message
        self.watcher.connect(broker.host, broker.port)
        self.watcher.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if not msg.payload:
            return
        if msg.topic == topics.presence(self.bus):
            self.presence = codec.decode(Presence, bytes(msg.payload))
        else:
            self.state = codec.decode(ReportedState, bytes(msg.payload))

    def install(self, tar: Path) -> None:
        """The first slot, installed by hand (deploy/README.md, "On the bus")."""
        assert main(self.install_args(tar)) == 0

    def install_args(self, tar: Path) -> list[str]:
        """`busfleet slots install`'s arguments for the first slot."""
        first = ["slots", "install", str(tar), "--slots", str(self.slots)]
        return [*first, "--launcher", str(self.launcher)]

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "one launcher at a time"
        self.state = None
        self.presence = None
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
                env=self.env,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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
            found = wait_for(check, WAIT, f"{self.bus}: {what}", every=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last {self.state}\n{self.log()}") from None
        assert found is not None
        return found

    def runs(self, version: str, phase: str = "idle") -> ReleaseState:
        """Until the running agent reports `version` in `phase`, and its presence (online)
        names the same agent version."""
        now = self.release(lambda r: r.running == version and r.phase == phase, version)
        wait_for(
            lambda: self.presence is not None and self.presence.online,
            WAIT,
            f"{self.bus}'s presence",
        )
        assert self.presence is not None and self.presence.agent == version, self.presence
        return now

    def want(self, version: str) -> None:
        """A retained desired document naming a release, as central publishes one."""
        self.desired += 1
        ref = ReleaseRef(version=version, target=target_name(version))
        doc = DesiredState(bus=self.bus, version=self.desired, release=ref)
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            client.publish(
                topics.desired(self.bus), codec.encode(doc), qos=1, retain=True
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
