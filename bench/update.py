"""The cost of one software update for the project's real release, beside the release's size.

Everything is real and on this machine: releases built from this checkout
(central/releases/build.py; dependencies from .cache/wheelhouse, which `./run bench` keeps),
a TUF repository (`busfleet release init` + `add`), a mosquitto, `busfleet central serve`
serving the repository over HTTP on 127.0.0.1, and one bus as systemd runs it: the launcher
(onboard/update/launcher.py) with its first slot at VERSION_A, the agent in it.

Stages, each with the figure it is measured against in the same run:
- build: `build_release` of VERSION_B (wall time; the release's size and wheel count);
- sign: `release add` into the repository;
- download: the bus's TUF client (`fetch_release`: root, timestamp, snapshot and targets
  metadata, then the target, length- and hash-checked) from central's HTTP routes; bytes are
  the metadata plus the target; baseline: a plain HTTP GET of the same target from the same
  server (what TUF's verification costs);
- install: `install_release` into a new slot (venv + pip install --no-index from the
  release's wheels); baseline: `python -m venv` of an empty environment (the part of an
  install that is not the release's own);
- update on the bus, end to end: the desired document names VERSION_B (published retained as
  central does) → the agent fetches through TUF, installs, switches (no trip runs), exits,
  the launcher starts the new slot on trial, the new agent proves itself healthy (connected,
  desired state applied, a telemetry record stored at central) and commits. Timed from the
  reported states the agent publishes (first seen per phase, polled at 20 Hz on the
  broker): desired → installed (waiting), and restart → healthy (the old process's last
  report → the new process's commit); baseline: a plain start of the same agent from the
  same slot to its first reported state.

Run: .venv/bin/python bench/update.py [--keep DIR] (or ./run bench update). Progress to
stderr, figures to stdout, the last line one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from busfleet.broker.launch import Broker, free_port, run_broker  # noqa: E402
from busfleet.broker.provision import agent_toml  # noqa: E402
from central.config import CentralConfig  # noqa: E402
from central.releases import repository  # noqa: E402
from central.releases.build import build_release  # noqa: E402
from onboard.update.fetch import fetch_release  # noqa: E402
from onboard.update.settings import UpdateSection  # noqa: E402
from onboard.update.slots import install_release  # noqa: E402
from protocols import codec, topics  # noqa: E402
from protocols.release import target_name  # noqa: E402
from protocols.schemas import DesiredState, Presence, ReleaseRef, ReportedState  # noqa: E402
from tests.secure_fleet import central_toml  # noqa: E402
from tests.test_remote_config import BUS, agent_config  # noqa: E402

VERSION_A, VERSION_B = "0.1.0", "0.2.0"
PYTHON = str(getattr(sys, "_base_executable", sys.executable))  # as /usr/bin/python3
WAIT_S = 300.0


def say(text: str) -> None:
    print(f"[update] {text}", file=sys.stderr, flush=True)


def timed(what: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    say(f"{what}: {seconds:.2f} s")
    return result, seconds


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@contextlib.contextmanager
def central_serving(broker: Broker, work: Path, repo: Path) -> Iterator[int]:
    """`busfleet central serve` with the release repository; yields its HTTP port."""
    port = free_port()
    config = CentralConfig(
        db=str(work / "central.sqlite"),
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        http_host="127.0.0.1",
        http_port=port,
        release_repo=str(repo),
    )
    toml = work / "central.toml"
    toml.write_text(central_toml(config))
    log = (work / "central.log").open("wb")
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/busfleet"), "central", "serve", "--config", str(toml)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/releases/metadata/timestamp.json")
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"central did not serve: {(work / 'central.log').read_text()}")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


class ReportedPhases:
    """The bus's reported states as they arrive: when each (running, phase) was first seen."""

    def __init__(self, broker: Broker) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self.offline: dict[str, float] = {}  # agent version -> its goodbye (presence offline)
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(topics.reported(BUS), 1), (topics.presence(BUS), 1)]
        )
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if not msg.payload:
            return
        now = time.monotonic()
        if msg.topic == topics.presence(BUS):
            presence = codec.decode(Presence, bytes(msg.payload))
            if not presence.online:
                with self.lock:
                    self.offline.setdefault(presence.agent, now)
            return
        release = codec.decode(ReportedState, bytes(msg.payload)).release
        if release is None:
            return
        with self.lock:
            self.first.setdefault((release.running, release.phase), now)

    def wait(self, running: str, phase: str) -> float:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self.lock:
                if (running, phase) in self.first:
                    return self.first[(running, phase)]
            time.sleep(0.05)
        raise SystemExit(f"no reported state with {running} {phase} within {WAIT_S:.0f} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish_desired(broker: Broker, version: int, release: str | None) -> None:
    ref = ReleaseRef(version=release, target=target_name(release)) if release else None
    doc = DesiredState(bus=BUS, version=version, release=ref)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topics.desired(BUS), codec.encode(doc), qos=1, retain=True).wait_for_publish(
            10
        )
    finally:
        client.loop_stop()
        client.disconnect()


class LaunchedBus:
    """The launcher with its slots, as systemd runs it."""

    def __init__(self, broker: Broker, work: Path, repo_url: str, root: Path) -> None:
        self.slots = work / "opt" / "slots"
        self.launcher = work / "opt" / "launcher.py"
        self.toml = work / "agent.toml"
        work.mkdir(parents=True, exist_ok=True)
        config = agent_config(broker, work / "bus")
        config = dataclasses.replace(
            config,
            update=UpdateSection(repo_url=repo_url, trusted_root=str(root), health_timeout_s=120),
            telemetry=dataclasses.replace(config.telemetry, send_every_s=0.5),
        )
        self.toml.write_text(agent_toml(config))
        self.log = work / "launcher.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def install_first(self, release: Path) -> None:
        busfleet = str(ROOT / ".venv/bin/busfleet")
        argv = [busfleet, "slots", "install", str(release), "--slots", str(self.slots)]
        subprocess.run([*argv, "--launcher", str(self.launcher)], check=True)

    def start(self) -> None:
        with self.log.open("ab") as log:
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
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temp dir)")
    args = parser.parse_args()
    wheelhouse = ROOT / ".cache" / "wheelhouse"
    if not wheelhouse.is_dir():
        raise SystemExit(f"{wheelhouse} is missing: run ./run setup (or ./run bench update)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-update-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(work, wheelhouse)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, wheelhouse: Path) -> int:
    tars = work / "releases"
    build = lambda v: build_release(ROOT, tars, version=v, wheelhouse=wheelhouse)  # noqa: E731
    tar_a, _ = timed(f"build {VERSION_A}", lambda: build(VERSION_A))
    tar_b, build_s = timed(f"build {VERSION_B}", lambda: build(VERSION_B))
    size = tar_b.stat().st_size
    wheels = sum(1 for _ in __import__("tarfile").open(tar_b).getnames() if _.endswith(".whl"))
    repo = work / "repo"
    root = repository.init(repo)
    repository.add(repo, tar_a)
    _, sign_s = timed(f"release add {VERSION_B}", lambda: repository.add(repo, tar_b))
    with run_broker(work / "broker") as broker, central_serving(broker, work, repo) as port:
        repo_url = f"http://127.0.0.1:{port}/releases"
        target = next((repo / "targets").glob(f"*.{target_name(VERSION_B)}")).name
        _, plain_s = timed(
            "plain HTTP GET of the target",
            lambda: urllib.request.urlopen(f"{repo_url}/targets/{target}").read(),
        )
        fetch_dir = work / "fetch"
        ref = ReleaseRef(version=VERSION_B, target=target_name(VERSION_B))
        fetched, tuf_s = timed(
            "TUF fetch (metadata + target, verified)",
            lambda: fetch_release(
                ref, repo_url=repo_url, trusted_root=root, work_dir=fetch_dir, running=VERSION_A
            ),
        )
        metadata_bytes = (
            tree_bytes(fetch_dir / "metadata") if (fetch_dir / "metadata").is_dir() else 0
        )
        download_bytes = metadata_bytes + Path(fetched).stat().st_size
        _, venv_s = timed(
            "baseline: python -m venv (empty)",
            lambda: subprocess.run([PYTHON, "-m", "venv", str(work / "empty-venv")], check=True),
        )
        slot, install_s = timed(
            "install into a slot", lambda: install_release(Path(fetched), work / "bench-slots")
        )
        slot_bytes = tree_bytes(work / "bench-slots" / slot)

        say("the bus: launcher + agent at 0.1.0")
        bus = LaunchedBus(broker, work / "bus-0", repo_url, root)
        bus.install_first(tar_a)
        phases = ReportedPhases(broker)
        try:
            started = time.monotonic()
            bus.start()
            plain_start_s = phases.wait(VERSION_A, "idle") - started
            say(f"baseline: launcher start → first reported state: {plain_start_s:.2f} s")
            desired_at = time.monotonic()
            publish_desired(broker, 1, VERSION_B)
            committed = phases.wait(VERSION_B, "idle")
            with phases.lock:
                goodbye = phases.offline[VERSION_A]  # the old agent stopped to switch
            to_installed_s = goodbye - desired_at
            restart_s = committed - goodbye
            total_s = committed - desired_at
            say(f"desired → switch {to_installed_s:.2f} s, restart → healthy {restart_s:.2f} s")
        finally:
            phases.close()
            bus.stop()

    mb = size / 1e6
    print(f"release {VERSION_B}: {mb:.1f} MB ({wheels} wheels), built in {build_s:.1f} s")
    print(f"{'stage':<44} {'figure':>12} {'baseline':>12}")
    print(f"{'sign (release add)':<44} {sign_s:>10.2f} s {'':>12}")
    print(f"{'download via TUF (s)':<44} {tuf_s:>10.2f} s {plain_s:>10.2f} s  plain GET")
    print(f"{'download bytes (metadata + target)':<44} {download_bytes:>12,} {size:>12,}  release")
    print(f"{'install into a slot':<44} {install_s:>10.2f} s {venv_s:>10.2f} s  empty venv")
    print(f"{'slot on disk (bytes)':<44} {slot_bytes:>12,}")
    print(f"{'bus: desired → switch (fetch + install)':<44} {to_installed_s:>10.2f} s")
    restart = f"{restart_s:>10.2f} s {plain_start_s:>10.2f} s  plain start"
    print(f"{'bus: restart → healthy (committed)':<44} {restart}")
    print(f"{'bus: desired → committed (whole update)':<44} {total_s:>10.2f} s")
    figures = {
        "release_bytes": size,
        "release_wheels": wheels,
        "build_s": round(build_s, 2),
        "sign_s": round(sign_s, 2),
        "download_s": round(tuf_s, 3),
        "download_plain_get_s": round(plain_s, 3),
        "download_bytes": download_bytes,
        "metadata_bytes": metadata_bytes,
        "install_s": round(install_s, 2),
        "install_empty_venv_s": round(venv_s, 2),
        "slot_bytes": slot_bytes,
        "bus_desired_to_switch_s": round(to_installed_s, 2),
        "bus_restart_to_healthy_s": round(restart_s, 2),
        "bus_plain_start_s": round(plain_start_s, 2),
        "bus_update_total_s": round(total_s, 2),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
