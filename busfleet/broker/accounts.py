"""Service accounts of the city listener: central's and the dispatchers', each with a role.

The city listener forces a client's id to its username (deploy/mosquitto/mosquitto.conf), so
an account has one connection at a time: processes that run at once (the service, each
ingest worker, each dashboard, the CLI tools beside a dashboard) need accounts of their own.

Two roles, as deploy/mosquitto/city.acl grants them:
  dispatcher  every account, through the ACL's `pattern` lines: reads the fleet view and asks
              central on `dispatch/ACCOUNT/request` (its own name, proven by the broker).
  central     the service and its workers: a `user NAME` block of its own in the ACL, a copy
              of the template's `central` block with NAME in place of `central`.

`set_role` writes the block into (or takes it out of) an installed city ACL, under the same
lock-and-rename discipline as the password file, so a broker reload never reads half a file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from busfleet.broker.errors import ProvisionError
from busfleet.broker.provision import _locked, _write_atomically
from protocols.errors import TopicError
from protocols.topics import check_user

Role = Literal["central", "dispatcher"]
ROLES: tuple[Role, ...] = ("central", "dispatcher")

CITY_ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "city.acl"
TEMPLATE_ACCOUNT = "central"  # the block the template's central accounts are copied from

_BLOCK = re.compile(r"^# BEGIN account (\S+)\n.*?^# END account \1\n", re.M | re.S)


def check_account(name: str) -> str:
    """`name` if it can be a city account (it becomes a topic level), else ProvisionError."""
    try:
        return check_user(name)
    except TopicError as exc:
        raise ProvisionError(
            f"invalid account name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -"
        ) from exc


def central_block(name: str, template: str | None = None) -> str:
    """The city ACL block that makes `name` a central account."""
    check_account(name)
    text = CITY_ACL.read_text() if template is None else template
    found = next((m for m in _BLOCK.finditer(text) if m.group(1) == TEMPLATE_ACCOUNT), None)
    if found is None:
        raise ProvisionError(f"{CITY_ACL} has no block for account {TEMPLATE_ACCOUNT}")
    old = TEMPLATE_ACCOUNT
    out = []
    for line in found.group(0).splitlines():
        # The account's name appears only in these four lines; every other line is its rights.
        if line in (f"# BEGIN account {old}", f"# END account {old}", f"user {old}"):
            line = line.removesuffix(old) + name
        elif line == f"topic deny busfleet/v1/dispatch/{old}/#":
            line = f"topic deny busfleet/v1/dispatch/{name}/#"
        out.append(line)
    return "\n".join(out) + "\n"


def central_accounts(acl_text: str) -> list[str]:
    """The names of the central accounts in a city ACL."""
    return [m.group(1) for m in _BLOCK.finditer(acl_text)]


def set_role(acl_file: Path, name: str, role: Role) -> bool:
    """Give `name` its role in an installed city ACL; True if the file changed.

    A central account gets its block (replacing an old one); a dispatcher has none (the
    patterns are its rights), so a block left from an earlier role is taken out. Reload the
    broker afterwards (SIGHUP).
    """
    check_account(name)
    if role not in ROLES:
        raise ProvisionError(f"unknown role {role!r}: {' or '.join(ROLES)}")
    with _locked(acl_file):
        try:
            text = acl_file.read_text()
            stat = acl_file.stat()
        except FileNotFoundError as exc:
            raise ProvisionError(
                f"{acl_file} does not exist: install deploy/mosquitto/city.acl there first"
            ) from exc
        kept = _BLOCK.sub(lambda m: "" if m.group(1) == name else m.group(0), text)
        if role == "central":
            kept = kept.rstrip("\n") + "\n" + central_block(name)
        if kept == text:
            return False
        _write_atomically(acl_file, kept, like=stat)
    return True


def remove_account(acl_file: Path, name: str) -> bool:
    """Take `name`'s block out of a city ACL; True if it had one."""
    return set_role(acl_file, name, "dispatcher") if acl_file.exists() else False
