"""Credentials for a new bus: a random password, its mosquitto password-file entry, agent.toml.

mosquitto 2.0 stores `username:$7$ITERATIONS$SALT$HASH` per line, where HASH is
PBKDF2-HMAC-SHA512 of the password with a 12-byte salt, both base64 (mosquitto_passwd's own
format; tests check ours against the real binary). Writing it here means provisioning needs
no mosquitto tools on the technician's machine.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from busfleet.broker.errors import ProvisionError
from onboard.config import AgentConfig, BusSection, MqttSection, parse_config
from protocols.topics import check_bus_id

# The users the ACL (deploy/mosquitto/acl) grants more than a bus: a bus must never be named so.
RESERVED_USERS = frozenset({"central", "dispatcher"})

# mosquitto_passwd's defaults. 101 iterations is cheap to check when a thousand buses reconnect
# at once, and costs nothing in safety here: our passwords are 192 random bits, not words.
HASH_ITERATIONS = 101
SALT_BYTES = 12

DEFAULT_BUS_DIR = "/etc/busfleet"  # where the files live on the bus
DEFAULT_BROKER_PORT = 8883


def new_password() -> str:
    """A strong random password (192 bits, URL-safe characters: no quoting trouble anywhere)."""
    return secrets.token_urlsafe(24)


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS
) -> str:
    """The `$7$...` hash that mosquitto 2.0 keeps in its password file for `password`."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def check_mosquitto_hash(password: str, hashed: str) -> bool:
    """True if `hashed` (a `$7$` entry) is the hash of `password`."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        want = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(got, want)


def _check_username(username: str) -> None:
    # ':' separates user and hash; whitespace and wildcards would break ACL lines.
    if not username or any(c in username for c in ":#+/ \t\r\n"):
        raise ProvisionError(f"invalid MQTT username {username!r}")


def read_password_file(path: Path) -> dict[str, str]:
    """Username -> hash of a mosquitto password file; missing file: empty."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    entries = {}
    for line in text.splitlines():
        user, sep, hashed = line.partition(":")
        if sep and not line.startswith("#"):
            entries[user] = hashed
    return entries


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of a password file between concurrent provisioning runs."""
    lock = path.with_name(f".{path.name}.lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _write_atomically(
    path: Path, text: str, mode: int = 0o600, *, like: os.stat_result | None = None
) -> None:
    """Replace `path` with `text` in one rename, so a broker reload never sees half a file.

    With `like` (the old file's stat) the new file keeps the old one's mode and, when we may
    set it, its owner. The temporary file is 0600 from the start: no secret is ever readable.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if like is not None:
            mode = like.st_mode & 0o777
            if os.geteuid() == 0:
                os.chown(tmp, like.st_uid, like.st_gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def set_password(password_file: Path, username: str, password: str) -> bool:
    """Add or replace `username` in a mosquitto password file; True if it replaced an entry.

    Other lines are kept as they are. A new file is created 0640 (give its group to the
    mosquitto user); an existing file keeps its mode and owner. Tell mosquitto afterwards
    (`systemctl reload mosquitto`, SIGHUP): it reads the file at start and on reload only.
    """
    _check_username(username)
    entry = f"{username}:{mosquitto_hash(password)}"
    password_file.parent.mkdir(parents=True, exist_ok=True)
    with _locked(password_file):
        try:
            lines = password_file.read_text().splitlines()
            stat: os.stat_result | None = password_file.stat()
        except FileNotFoundError:
            lines, stat = [], None
        replaced = False
        for i, line in enumerate(lines):
            if line.partition(":")[0] == username and not line.startswith("#"):
                lines[i] = entry
                replaced = True
        if not replaced:
            lines.append(entry)
        _write_atomically(password_file, "\n".join(lines) + "\n", 0o640, like=stat)
    return replaced


def remove_user(password_file: Path, username: str) -> bool:
    """Take `username` out of a mosquitto password file; True if it was there.

    At its next reload mosquitto refuses the user and drops its open connections.
    """
    _check_username(username)
    with _locked(password_file):
        try:
            lines = password_file.read_text().splitlines()
            stat = password_file.stat()
        except FileNotFoundError:
            return False
        kept = [ln for ln in lines if ln.startswith("#") or ln.partition(":")[0] != username]
        if len(kept) == len(lines):
            return False
        _write_atomically(password_file, "".join(f"{ln}\n" for ln in kept), like=stat)
    return True


def add_user(password_file: Path, username: str, secret_file: Path) -> str:
    """Give a service user (`central`, `dispatcher`) a new random password.

    The password goes to `secret_file` (mode 0600) for the service's config
    (central.toml `mqtt_password_file`); returns it.
    """
    password = new_password()
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(secret_file, password + "\n", 0o600)
    set_password(password_file, username, password)
    return password


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    raise TypeError(f"no TOML form for {type(value).__name__}")


def agent_toml(config: AgentConfig, header: str = "") -> str:
    """`config` as agent.toml text: every section and key, so a technician sees them all."""
    out = [f"# {line}" for line in header.splitlines()]
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        out += ["", f"[{section.name}]"]
        out += [
            f"{f.name} = {_toml_value(getattr(values, f.name))}" for f in dataclasses.fields(values)
        ]
    return "\n".join(out).lstrip("\n") + "\n"


@dataclass(frozen=True, slots=True)
class Provisioned:
    """What provision_bus wrote. Copy `directory` to the bus's bus_dir (default /etc/busfleet)."""

    bus_id: str
    directory: Path  # OUT/BUS_ID
    agent_config: Path  # OUT/BUS_ID/agent.toml
    password: Path  # OUT/BUS_ID/password, 0600
    ca_file: Path | None  # OUT/BUS_ID/ca.crt, a copy of the CA given
    password_entry: Path | None  # OUT/BUS_ID/mosquitto-passwd.line when no password file was given
    replaced: bool  # the bus had credentials before (rotation)


def provision_bus(
    bus_id: str,
    out: Path,
    *,
    broker_host: str = MqttSection().host,
    broker_port: int = DEFAULT_BROKER_PORT,
    ca_file: Path | None = None,
    password_file: Path | None = None,
    bus_dir: str = DEFAULT_BUS_DIR,
    data_dir: str = BusSection().data_dir,
    rotate: bool = False,
) -> Provisioned:
    """Make a bus's credentials and config in OUT/BUS_ID; enter it in `password_file`.

    `bus_dir` is where those files will live on the bus: agent.toml refers to its password
    and CA there. Without `password_file` the hash line is written beside them, to be added
    to the broker's file. A bus that already has credentials (here or in the password file)
    gets new ones only with `rotate`: the old ones stop working at the broker's next reload.
    """
    check_bus_id(bus_id)
    if bus_id.lower() in RESERVED_USERS:
        raise ProvisionError(f"{bus_id!r} is a service user of the broker, not a bus id")
    if ca_file is not None and not ca_file.is_file():
        raise ProvisionError(f"CA certificate {ca_file} does not exist")
    directory = out / bus_id
    secret = directory / "password"
    known = password_file is not None and bus_id in read_password_file(password_file)
    existed = secret.exists() or known
    if existed and not rotate:
        raise ProvisionError(f"{bus_id} already has credentials; replace them with --rotate")

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    password = new_password()
    installed = Path(bus_dir)
    ca_copy = None
    if ca_file is not None:
        ca_copy = directory / "ca.crt"
        if ca_file.resolve() != ca_copy.resolve():
            shutil.copyfile(ca_file, ca_copy)
    config = AgentConfig(
        bus=BusSection(id=bus_id, data_dir=data_dir),
        mqtt=MqttSection(
            host=broker_host,
            port=broker_port,
            username=bus_id,
            password_file=str(installed / "password"),
            ca_file=str(installed / "ca.crt") if ca_copy else "",
            insecure_dev_broker=ca_copy is None,  # provisioned with --no-tls
        ),
    )
    text = agent_toml(
        config,
        f"busfleet agent configuration of bus {bus_id}.\n"
        "Written by `busfleet bus provision`; every key is in deploy/README.md.",
    )
    parse_config(text, "agent.toml")  # what we write must load
    _write_atomically(directory / "agent.toml", text, 0o644)
    _write_atomically(secret, password + "\n", 0o600)
    entry_path = None
    if password_file is not None:
        set_password(password_file, bus_id, password)
    else:
        entry_path = directory / "mosquitto-passwd.line"
        _write_atomically(entry_path, f"{bus_id}:{mosquitto_hash(password)}\n", 0o600)
    return Provisioned(
        bus_id=bus_id,
        directory=directory,
        agent_config=directory / "agent.toml",
        password=secret,
        ca_file=ca_copy,
        password_entry=entry_path,
        replaced=existed,
    )
