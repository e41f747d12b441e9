"""Start an MQTT broker for the demo and the tests: mosquitto on a free loopback port.

The embedded pure-Python broker (amqtt) is only a fallback for the zero-install demo: it is
slower and does not keep MQTT delivery semantics exactly (REFERENCE.md section 6).
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from busfleet.broker.errors import BrokerError


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    kind: str  # "mosquitto" or "embedded"


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: the kernel sends it SIGTERM when its parent dies (Linux).

    Whatever happens to the demo or a test (even kill -9), its broker and processes go too.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise BrokerError(f"nothing listens on {host}:{port} after {timeout} s")


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


def mosquitto_config(port: int, workdir: Path, extra: str = "") -> str:
    """A loopback-only development config: anonymous access, no persistence, generous queues."""
    return "\n".join(
        [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            # A slow subscriber must not silently lose QoS 0 messages (REFERENCE.md 6).
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "set_tcp_nodelay true",  # small requests and receipts go out at once (no Nagle)
            "log_type error",
            "log_type warning",
            f"log_dest file {workdir / 'mosquitto.log'}",
            "user root",  # only honoured when started as root; keeps the workdir writable
            extra,
            "",
        ]
    )


@contextlib.contextmanager
def run_mosquitto(
    workdir: Path, *, port: int | None = None, config: str | None = None
) -> Iterator[Broker]:
    """Run mosquitto with `config` (default: mosquitto_config) until the block ends."""
    exe = mosquitto_path()
    if exe is None:
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(config if config is not None else mosquitto_config(port, workdir))
    proc = subprocess.Popen(
        [exe, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "mosquitto.stderr").open("ab"),
        preexec_fn=die_with_parent,
    )
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        yield Broker("127.0.0.1", port, "mosquitto")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_embedded(workdir: Path, *, port: int | None = None) -> Iterator[Broker]:
    """Run amqtt in a child process (so that its event loop never competes with ours)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "busfleet.broker.embedded", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "embedded-broker.log").open("wb"),
        preexec_fn=die_with_parent,
    )
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        yield Broker("127.0.0.1", port, "embedded")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_broker(workdir: Path, *, port: int | None = None) -> Iterator[Broker]:
    """mosquitto if installed, else the embedded broker."""
    runner = run_mosquitto if mosquitto_path() else run_embedded
    with runner(workdir, port=port) as broker:
        yield broker
