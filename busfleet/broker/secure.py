"""The production broker config (deploy/mosquitto/) rendered and run: TLS, passwords, the ACL.

`render_mosquitto_config` fills the placeholders of deploy/mosquitto/mosquitto.conf and is
what `busfleet bus broker-config` prints for a city's broker. `run_secure_mosquitto` runs
that same config on loopback for the integration tests, with development certificates and
provisioned users, so that the tests exercise exactly what a city installs.

Each listener has its own password file and ACL: buses exist only on the bus listener
(bus.acl), service accounts only on the city listener (city.acl, with a block per central
account: busfleet/broker/accounts.py). Both force client ids to usernames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busfleet.broker.accounts import CITY_ACL, Role, set_role
from busfleet.broker.errors import BrokerError
from busfleet.broker.launch import free_port, run_mosquitto
from busfleet.broker.provision import Provisioned, add_user, provision_bus
from busfleet.broker.tls import make_dev_certificates
from central.config import CentralConfig
from onboard.config import AgentConfig, load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
TEMPLATE = DEPLOY / "mosquitto.conf"
ACL = DEPLOY / "bus.acl"

# The accounts a test broker starts with, and their roles on the city listener.
SERVICE_USERS: dict[str, Role] = {"central": "central", "dispatcher": "dispatcher"}
_RELOADED = "Reloading config."

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_CITY_BLOCK = re.compile(r"^# BEGIN city listener\n.*?^# END city listener\n", re.M | re.S)


def render_mosquitto_config(
    *,
    port: int,
    workdir: Path,
    cafile: Path | str,
    certfile: Path | str,
    keyfile: Path | str,
    password_file: Path | str,
    acl_file: Path | str,
    city_password_file: Path | str = "/etc/mosquitto/busfleet-city.passwd",
    city_acl_file: Path | str = "/etc/mosquitto/busfleet-city.acl",
    city_port: int | None = None,
    bind_address: str = "",
    city_bind_address: str = "127.0.0.1",
    user: str = "mosquitto",
    log_dest: str | None = None,
) -> str:
    """deploy/mosquitto/mosquitto.conf with its placeholders filled.

    `port` is the bus listener (all interfaces unless `bind_address`) with the buses'
    `password_file` and `acl_file`; `city_port` the listener for central and dispatchers
    (left out when None) with `city_password_file` and `city_acl_file`. `workdir` holds persistence
    and, unless `log_dest` says otherwise ("syslog", "stderr", "file PATH"), the log.
    """
    values = {
        "port": str(port),
        "bind_address": bind_address,
        "city_port": str(city_port) if city_port is not None else "",
        "city_bind_address": city_bind_address,
        "workdir": str(workdir).rstrip("/") or "/",
        "cafile": str(cafile),
        "certfile": str(certfile),
        "keyfile": str(keyfile),
        "password_file": str(password_file),
        "acl_file": str(acl_file),
        "city_password_file": str(city_password_file),
        "city_acl_file": str(city_acl_file),
        "user": user,
        "log_dest": log_dest or f"file {workdir / 'mosquitto.log'}",
    }
    for key, value in values.items():
        # A newline or a stray placeholder would smuggle extra options into the config.
        if "\n" in value or "{{" in value:
            raise ValueError(f"{key} must be a single line: {value!r}")
    template = TEMPLATE.read_text()
    if city_port is None:
        template = _CITY_BLOCK.sub("", template)

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{TEMPLATE} has an unknown placeholder {{{{{name}}}}}")
        return values[name]

    lines = []
    for line in template.splitlines():
        # Placeholders in comments stay as they are: they document the template.
        lines.append(line if line.startswith("#") else _PLACEHOLDER.sub(fill, line).rstrip())
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class SecureBroker:
    """A running mosquitto with the production config; files are under `workdir`."""

    host: str  # 127.0.0.1, which the server certificate names (so does "localhost")
    port: int  # the bus listener: buses only
    city_port: int  # central and dispatchers: service accounts only
    workdir: Path
    ca_file: Path
    password_file: Path  # the buses'
    acl_file: Path  # bus.acl
    city_password_file: Path  # the service accounts'
    city_acl_file: Path  # a copy of city.acl, with a block per central account

    def secret_file(self, user: str) -> Path:
        """The file holding a service user's password (central.toml `mqtt_password_file`)."""
        return self.workdir / "users" / f"{user}.password"

    def password(self, user: str) -> str:
        """A service user's or a provisioned bus's password."""
        path = self.secret_file(user)
        if not path.exists():
            path = self.bus_dir(user) / "password"
        return path.read_text().strip()

    def bus_dir(self, bus_id: str) -> Path:
        """Where a provisioned bus's agent.toml, password and ca.crt are."""
        return self.workdir / "buses" / bus_id

    def add_account(self, name: str, role: Role) -> None:
        """A new city account (or a new role for one), live on the running broker."""
        _add_account(self, name, role)
        self.reload()

    def central_config(self, user: str = "central", **changes: Any) -> CentralConfig:
        """A central.toml for this broker's city listener, as `user` (an account made by
        `add_account`, or `central` or `dispatcher`)."""
        config = CentralConfig(
            mqtt_host=self.host,
            mqtt_port=self.city_port,
            mqtt_username=user,
            mqtt_password_file=str(self.secret_file(user)),
            mqtt_ca_file=str(self.ca_file),
        )
        return dataclasses.replace(config, **changes)

    def agent_config(self, bus_id: str) -> AgentConfig:
        """A provisioned bus's agent.toml, as provisioning wrote it."""
        return load_config(self.bus_dir(bus_id) / "agent.toml")

    def provision(self, bus_id: str) -> Provisioned:
        """Provision one more bus and make the running broker reload its password file."""
        done = _provision(self, bus_id)
        self.reload()
        return done

    def reload(self, timeout: float = 5.0) -> None:
        """SIGHUP: mosquitto rereads its password file and ACL; returns once its log says so."""
        log = self.workdir / "mosquitto.log"
        try:
            pid = int((self.workdir / "mosquitto.pid").read_text())
        except (OSError, ValueError) as exc:
            raise BrokerError("the broker wrote no pid file") from exc
        before = log.read_text().count(_RELOADED)
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while log.read_text().count(_RELOADED) == before:
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not reload within {timeout} s")
            time.sleep(0.02)


def _add_account(broker: SecureBroker, name: str, role: Role) -> None:
    add_user(broker.city_password_file, name, broker.secret_file(name))
    set_role(broker.city_acl_file, name, role)


def _provision(broker: SecureBroker, bus_id: str) -> Provisioned:
    return provision_bus(
        bus_id,
        broker.workdir / "buses",
        broker_host=broker.host,
        broker_port=broker.port,
        ca_file=broker.ca_file,
        password_file=broker.password_file,
        bus_dir=str(broker.bus_dir(bus_id)),
        data_dir=str(broker.bus_dir(bus_id) / "data"),
    )


@contextlib.contextmanager
def run_secure_mosquitto(workdir: Path, buses: Iterable[str] = ()) -> Iterator[SecureBroker]:
    """Run mosquitto on loopback with deploy/mosquitto's config, TLS and ACL, until the block ends.

    Makes a development CA and server certificate, gives the city accounts `central` and
    `dispatcher` random passwords and provisions `buses` (more later with
    SecureBroker.provision and SecureBroker.add_account). The config
    differs from production only in its values (loopback addresses, free ports, `user root`)
    and one added line, a pid file for SecureBroker.reload.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    certs = make_dev_certificates(workdir / "tls")
    port, city_port = free_port(), free_port()
    while city_port == port:
        city_port = free_port()
    broker = SecureBroker(
        host="127.0.0.1",
        port=port,
        city_port=city_port,
        workdir=workdir,
        ca_file=certs.ca_file,
        password_file=workdir / "passwd",
        acl_file=ACL,
        city_password_file=workdir / "city.passwd",
        city_acl_file=workdir / "city.acl",
    )
    broker.city_acl_file.write_text(CITY_ACL.read_text())  # as a city installs it
    for user, role in SERVICE_USERS.items():
        _add_account(broker, user, role)
    for bus_id in buses:
        _provision(broker, bus_id)
    config = render_mosquitto_config(
        port=port,
        workdir=workdir,
        cafile=certs.ca_file,
        certfile=certs.cert_file,
        keyfile=certs.key_file,
        password_file=broker.password_file,
        acl_file=ACL,
        city_password_file=broker.city_password_file,
        city_acl_file=broker.city_acl_file,
        city_port=city_port,
        bind_address="127.0.0.1",
        city_bind_address="127.0.0.1",
        # Test files live in a private temporary directory that the `mosquitto` user
        # cannot read; production renders `user mosquitto`.
        user="root",
    )
    config += f"pid_file {workdir / 'mosquitto.pid'}\n"
    with run_mosquitto(workdir, port=port, config=config):
        yield broker
