"""Software releases (issue 16): versions, the release manifest, the phases and events of an
update, shared by the release tools at central and the updater on the bus. Pure.

A release is one uncompressed tar, `busfleet-{version}.tar`: `release.json` (the `Manifest`)
and `wheels/` (the project's wheel and every locked dependency as a wheel, so that a bus
installs it offline). It reaches a bus only as a target of central's TUF repository.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from protocols.errors import CodecError

__all__ = [
    "EVENT_AGENT_START",
    "EVENT_UPDATE_FAILED",
    "EVENT_UPDATE_OK",
    "EVENT_UPDATE_REFUSED",
    "MANIFEST",
    "PHASES",
    "Manifest",
    "WheelFile",
    "parse_version",
    "target_name",
]

MANIFEST = "release.json"  # the manifest's name inside a release tar
_VERSION = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$")

# Where an update stands on a bus (ReleaseState.phase).
PHASES = (
    "idle",  # runs what central wants (or central wants nothing)
    "fetching",  # TUF refresh and download of the target
    "installing",  # a new slot (virtual environment) being built from the release's wheels
    "waiting",  # installed; waits for a safe moment (no trip, the maintenance window)
    "trial",  # the new version runs and must prove itself healthy in time
    "failed",  # the wanted version failed (did not install, or was rolled back)
    "refused",  # the wanted version was refused (signature, hash, expiry, older than running)
)

# Events a bus records about its software (outbox: they reach central exactly once).
EVENT_UPDATE_OK = "update_ok"  # {version, previous, slot}: committed after its health check
EVENT_UPDATE_FAILED = "update_failed"  # severity 3 {version, previous, reason, log_tail}
EVENT_UPDATE_REFUSED = "update_refused"  # severity 2 {version, reason}
EVENT_AGENT_START = "agent_start"  # {version, slot}: every start (a bus that keeps restarting)


def parse_version(text: str) -> tuple[int, ...]:
    """A release version as a tuple to compare ("0.10.1" > "0.9"); CodecError if it is none."""
    if not _VERSION.match(text):
        raise CodecError(f"{text!r} is not a release version (dotted numbers, like 0.2.0)")
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (4 - len(parts))


def target_name(version: str) -> str:
    """The TUF target name of a version's release."""
    parse_version(version)
    return f"busfleet-{version}.tar"


class WheelFile(msgspec.Struct, frozen=True, kw_only=True):
    file: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.+-]{1,200}\.whl$")]
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, msgspec.Meta(ge=0)]


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """release.json: what a release holds and what it needs to run."""

    name: str = "busfleet"
    version: str
    python: str  # the interpreter the wheels are for, "3.11"
    platform: str  # "linux-x86_64": the machine the dependency wheels fit
    created: float
    requirement: str  # what to install from wheels/, "busfleet==0.2.0"
    wheels: list[WheelFile]
