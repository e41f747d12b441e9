"""A/B slots on the bus: install a release into a new slot, switch to it, commit or prune.

Each slot is a directory of the slots directory named for its version and the first 8 hex of
its manifest's sha256 ("0.2.0-1a2b3c4d"), holding a virtual environment built by
`python -m venv` and `pip install --no-index --find-links <the release's wheels>`. It is
built under a temporary name (`.tmp-...`) and renamed when complete, so a power cut in the
middle leaves only a temporary directory, which the launcher removes at its next start; the
running slot is never touched. Which slot runs is said by the state file, whose format and
atomic writes live in onboard/update/launcher.py (the launcher reads it with the standard
library alone). At most the current and the previous slot are kept (and one installed but
not yet switched to).

Blocking (pip takes seconds): the update runtime calls `install` in a thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import msgspec

from onboard.errors import UpdateError
from onboard.update.launcher import (
    MAX_TRIAL_STARTS,
    TMP_PREFIX,
    SlotError,
    SlotState,
    Trial,
    fsync_dir,
    read_state,
    slot_ok,
    slot_version,
    write_state,
)
from protocols.errors import CodecError
from protocols.release import MANIFEST, Manifest, parse_version

__all__ = ["InstallFailed", "commit", "install_release", "prune", "slot_name", "switch"]

log = logging.getLogger("busfleet.onboard.update.slots")
INSTALL_TIMEOUT_S = 900.0


class InstallFailed(UpdateError):
    """A release could not be installed into a slot (the message says why)."""


def slot_name(manifest_bytes: bytes, version: str) -> str:
    return f"{version}-{hashlib.sha256(manifest_bytes).hexdigest()[:8]}"


def read_manifest(release: Path) -> tuple[Manifest, bytes]:
    """The manifest of a release tar, checked; InstallFailed if it has none or a bad one."""
    try:
        with tarfile.open(release) as tar:
            member = tar.extractfile(MANIFEST)
            raw = member.read() if member is not None else b""
        manifest = msgspec.json.decode(raw, type=Manifest)
        parse_version(manifest.version)
    except (OSError, KeyError, tarfile.TarError, msgspec.DecodeError, CodecError) as exc:
        raise InstallFailed(f"{release.name}: not a release: {exc}") from exc
    return manifest, raw


def install_release(
    release: Path, slots: Path, *, python: str | None = None, timeout_s: float = INSTALL_TIMEOUT_S
) -> str:
    """Install the release tar into a new slot of `slots`; returns the slot's name. An
    existing complete slot of the same release is reused."""
    manifest, raw = read_manifest(release)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest.python != here:
        raise InstallFailed(
            f"release {manifest.version} is for Python {manifest.python}, not {here}"
        )
    name = slot_name(raw, manifest.version)
    slots.mkdir(parents=True, exist_ok=True)
    if slot_ok(slots, name):
        return name
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}unpack-", dir=slots) as tmp:
        wheels = Path(tmp) / "wheels"
        _unpack(release, Path(tmp), manifest)
        target = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=slots))
        try:
            base = python or str(getattr(sys, "_base_executable", sys.executable))
            _run([base, "-m", "venv", str(target)], timeout_s)
            pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q"]
            pip += ["--disable-pip-version-check", "--no-index", "--no-cache-dir"]
            _run([*pip, "--find-links", str(wheels), manifest.requirement], timeout_s)
            _check(target, manifest.version, timeout_s)
            target.chmod(0o755)  # mkdtemp's 0700: the slot is no secret
            _sync_tree(target)
            target.replace(slots / name)
            fsync_dir(slots)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    log.info(
        "release %s installed in slot %s (%.1f s)",
        manifest.version,
        name,
        time.monotonic() - started,
    )
    return name


def _unpack(release: Path, into: Path, manifest: Manifest) -> None:
    """The wheels, each checked against the manifest (TUF checked the tar as a whole)."""
    wanted = {f"wheels/{w.file}": w for w in manifest.wheels}
    try:
        with tarfile.open(release) as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            tar.extractall(into, members=members, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise InstallFailed(f"{release.name}: cannot unpack: {exc}") from exc
    for name, wheel in wanted.items():
        path = into / name
        if not path.exists():
            raise InstallFailed(f"{release.name}: {wheel.file} is missing")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != wheel.sha256:
            raise InstallFailed(f"{release.name}: {wheel.file} does not match its sha256")


def _check(target: Path, version: str, timeout_s: float) -> None:
    """The slot's interpreter imports busfleet at the release's version."""
    probe = "import importlib.metadata as m, busfleet.cli; print(m.version('busfleet'))"
    out = _run([str(target / "bin" / "python"), "-c", probe], timeout_s).strip()
    if out != version:
        raise InstallFailed(f"the new slot runs busfleet {out!r}, not {version}")


def _sync_tree(root: Path) -> None:
    """fsync every file of a new slot before it gets its name (a power cut after the rename
    must not leave empty files behind it)."""
    for dirpath, _dirs, files in os.walk(root):
        for file in files:
            path = Path(dirpath) / file
            if path.is_symlink():
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def _run(command: list[str], timeout_s: float) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallFailed(f"{Path(command[0]).name}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
        raise InstallFailed(f"{' '.join(command[1:4])} failed: {tail}")
    return done.stdout


def switch(slots: Path, name: str, *, timeout_s: float, desired: int) -> SlotState:
    """The new slot is current, on trial; the running one is previous (one atomic write)."""
    state = read_state(slots)
    if not slot_ok(slots, name):
        raise InstallFailed(f"slot {name} is not installed")
    trial = Trial(
        since=time.time(), timeout_s=timeout_s, desired=desired, max_starts=MAX_TRIAL_STARTS
    )
    new = dataclasses.replace(state, current=name, previous=state.current, trial=trial)
    write_state(slots, new)
    return new


def commit(slots: Path, name: str) -> SlotState:
    """The slot on trial proved itself: its trial ends, the previous slot is kept."""
    state = read_state(slots)
    if state.current != name:
        raise UpdateError(f"slot {name} is not current ({state.current} is)")
    new = dataclasses.replace(state, trial=None)
    write_state(slots, new)
    prune(slots, new)
    return new


def first_slot(slots: Path, name: str) -> SlotState:
    """A slot installed by hand becomes current (without a trial); the former current, if
    any, becomes previous."""
    try:
        state = read_state(slots)
    except SlotError:  # no state yet: this is the first slot
        state = SlotState(current="")
    previous = state.current if state.current != name and slot_ok(slots, state.current) else ""
    new = SlotState(current=name, previous=previous, failed=state.failed, refused=state.refused)
    write_state(slots, new)
    return new


def roll_back_by_hand(slots: Path) -> SlotState:
    """The previous slot is current again (the service stopped first: deploy/README.md)."""
    state = read_state(slots)
    if not slot_ok(slots, state.previous):
        raise UpdateError("there is no previous slot to roll back to")
    new = dataclasses.replace(state, current=state.previous, previous=state.current, trial=None)
    write_state(slots, new)
    return new


def prune(slots: Path, state: SlotState, keep: tuple[str, ...] = ()) -> list[str]:
    """Delete every slot but the current, the previous and `keep`; returns their names."""
    kept = {state.current, state.previous, *keep}
    gone = []
    for path in sorted(slots.iterdir()):
        if path.is_dir() and not path.name.startswith(".") and path.name not in kept:
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path.name)
    return gone


def installed(slots: Path, version: str) -> str | None:
    """A complete slot holding `version`, if any."""
    if not slots.is_dir():
        return None
    for path in sorted(slots.iterdir()):
        if slot_version(path.name) == version and slot_ok(slots, path.name):
            return path.name
    return None
