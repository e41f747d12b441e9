"""The fleet link on the production broker config, for the reliability and chaos tests.

`run_secure_mosquitto` (busfleet/broker/secure.py) renders deploy/mosquitto's config: TLS,
passwords, the ACL, persistence. Here that broker can be killed with SIGKILL and started again
on the same rendered config, ports and persistence file (`BrokerLife`); central and the agents
run as processes with the credentials provisioning gave them (`SecureProcs`); and central's
counters are read as a dispatcher's dashboard reads them (`StatsWatcher`), summed over
central's restarts (each process starts counting from zero).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from busfleet.broker.launch import run_mosquitto
from busfleet.broker.provision import agent_toml
from busfleet.broker.secure import SecureBroker
from central import mqtt as central_mqtt
from central.config import CentralConfig
from onboard.config import AgentConfig, CanSection, DisplaySection, DriverSection, GpsSection
from protocols import codec, topics
from protocols.schemas import CentralStats
from tests.fleet_helpers import Procs, wait_for


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class BrokerLife:
    """The secure broker's process: SIGKILL it, start it again exactly as it was rendered."""

    def __init__(self, broker: SecureBroker) -> None:
        self.broker = broker
        self.kills = 0
        self._restarts = contextlib.ExitStack()

    def pid(self) -> int:
        pid = int((self.broker.workdir / "mosquitto.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"mosquitto" in cmdline, f"pid {pid} is not our broker: {cmdline!r}"
        return pid

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing saved since the last autosave."""
        os.kill(self.pid(), signal.SIGKILL)
        self.kills += 1
        wait_for(lambda: not _listening(self.broker.host, self.broker.port), 10, "broker gone")

    def start(self) -> None:
        """The same config file (ports, TLS, ACL, persistence location) in a new process."""
        config = (self.broker.workdir / "mosquitto.conf").read_text()
        self._restarts.enter_context(
            run_mosquitto(self.broker.workdir, port=self.broker.port, config=config)
        )
        wait_for(lambda: _listening(self.broker.host, self.broker.city_port), 10, "city listener")

    def close(self) -> None:
        self._restarts.close()


def central_toml(config: CentralConfig) -> str:
    """`config` as central.toml text (every key but `extra`)."""
    lines = ["[central]"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "extra":
            continue
        if isinstance(value, str):
            lines.append(f'{f.name} = "{value}"')
        else:
            lines.append(f"{f.name} = {value!r}")
    return "\n".join(lines) + "\n"


def bus_config(broker: SecureBroker, bus: str, data_dir: Path, **sections: Any) -> AgentConfig:
    """A provisioned bus's own agent.toml (TLS, its password), with no hardware and no screens,
    its outbox in `data_dir`, a short reconnect backoff; `sections` replace whole sections."""
    config = broker.agent_config(bus)
    changes: dict[str, Any] = {
        "bus": dataclasses.replace(config.bus, data_dir=str(data_dir)),
        "mqtt": dataclasses.replace(config.mqtt, backoff_max_s=2.0),
        "gps": GpsSection(source="none"),
        "can": CanSection(interface="none"),
        "display": DisplaySection(enabled=False),
        "driver": DriverSection(enabled=False),
    }
    changes.update(sections)
    return dataclasses.replace(config, **changes)


class SecureProcs(Procs):
    """`Procs` whose central and agents log in to the secure broker with their own accounts."""

    def __init__(self, workdir: Path, broker: SecureBroker) -> None:
        super().__init__(workdir, broker.port)
        self.broker = broker

    def central(self, name: str = "central", *extra: str) -> subprocess.Popen[bytes]:
        config = self.broker.central_config(db=str(self.workdir / "central.sqlite"))
        path = self.workdir / f"{name}.central.toml"
        path.write_text(central_toml(config))
        return self.start(name, "central", "serve", "--config", str(path), *extra)

    def agent(self, bus: str, name: str | None = None, **sections: Any) -> subprocess.Popen[bytes]:
        path = self.workdir / f"{bus}.toml"
        path.write_text(agent_toml(bus_config(self.broker, bus, self.workdir / bus, **sections)))
        return self.start(name or bus, "agent", "--config", str(path))


class StatsWatcher:
    """Central's retained stats, as a dispatcher reads them; counters summed over restarts."""

    def __init__(self, broker: SecureBroker) -> None:
        self._lock = threading.Lock()
        self._last_t = 0.0
        self._done: dict[str, int] = {}  # counters of central processes that have ended
        self._current: dict[str, int] = {}
        self.restarts_seen = 0
        config = broker.central_config("dispatcher", client_id="dispatcher")
        self.client = central_mqtt.paho_client(config)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topics.central_stats(), qos=1)
        self.client.connect_async(broker.host, broker.city_port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if not msg.payload:
            return
        stats = codec.decode(CentralStats, msg.payload)
        with self._lock:
            if stats.t <= self._last_t:  # a retained copy we have seen (the broker restarted)
                return
            self._last_t = stats.t
            if stats.counters.get("messages", 0) < self._current.get("messages", 0):
                self.restarts_seen += 1  # a new central process counts from zero
                for key, value in self._current.items():
                    self._done[key] = self._done.get(key, 0) + value
            self._current = dict(stats.counters)

    def total(self, counter: str) -> int:
        with self._lock:
            return self._done.get(counter, 0) + self._current.get(counter, 0)

    def seen(self) -> bool:
        with self._lock:
            return bool(self._current)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
