"""Central's TUF repository of software releases, in one folder (python-tuf's metadata API).

The Update Framework splits trust into four roles, each with its own ed25519 key here:
root (which keys sign what; kept offline), targets (the release tars, their hashes and
lengths), snapshot (which targets metadata is current: no mix-and-match) and timestamp (short
expiry: a bus notices a frozen repository within a day). Layout::

    repo_dir/
      keys/{targets,snapshot,timestamp}.pem   private keys, PKCS#8 PEM, mode 0600
      keys/root.pem                           unless `root_key_dir` put it elsewhere (offline)
      metadata/1.root.json, root.json         root by version (as ngclient fetches it) and the
                                              latest unversioned (what a bus is provisioned with)
      metadata/N.targets.json, N.snapshot.json
      metadata/timestamp.json
      targets/{sha256}.busfleet-{version}.tar

The repository uses *consistent snapshots* (python-tuf's default in `Root`, and what
`tuf.ngclient.Updater` then fetches by default): snapshot and targets metadata by version
(`N.snapshot.json`), targets by their hash (`{sha256}.{name}`), only timestamp.json and the
roots by fixed names. Nothing a bus may be reading is ever rewritten: a new release adds new
files, and timestamp.json, replaced atomically last, points to them. Every change holds a lock
(repo_dir/.lock), so `busfleet release add` and central's timestamp task do not race.

Times are arguments (`now`), so that a test can make an already expired timestamp.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Key
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from central.errors import CentralError
from protocols.errors import CodecError
from protocols.release import Manifest, parse_version, target_name
from protocols.release_tar import read_manifest

__all__ = [
    "EXPIRY",
    "ROLES",
    "Release",
    "ReleaseRepoError",
    "add",
    "expiries",
    "has_key",
    "init",
    "keep_fresh",
    "list_releases",
    "refresh_timestamp",
]

T = TypeVar("T", Root, Timestamp, Snapshot, Targets)

ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
# How long each role's metadata stays valid once signed. Root: re-signed with the offline key
# (a new root version) within a year. Targets and snapshot: re-signed by `keep_fresh` while
# their keys are online. Timestamp: a day, re-signed by central twice a day (a bus that
# cannot reach a fresh one refuses updates rather than install from a frozen repository).
EXPIRY = {
    Root.type: timedelta(days=365),
    Targets.type: timedelta(days=365),
    Snapshot.type: timedelta(days=365),
    Timestamp.type: timedelta(days=1),
}
RESIGN_BEFORE = timedelta(days=30)  # keep_fresh re-signs targets and snapshot this early
_JSON = JSONSerializer(compact=False)


class ReleaseRepoError(CentralError):
    """The repository cannot do what was asked: not initialised, a key missing or not the
    one root names, a release tar refused (the message says why)."""


@dataclass(frozen=True, slots=True)
class Release:
    """A release the repository holds (a target)."""

    version: str
    target: str  # the TUF target name, busfleet-{version}.tar
    length: int
    sha256: str


@dataclass(frozen=True, slots=True)
class _Paths:
    root: Path

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"

    @property
    def targets(self) -> Path:
        return self.root / "targets"

    def key(self, role: str) -> Path:
        return self.keys / f"{role}.pem"


def init(
    repo_dir: Path,
    *,
    root_key_dir: Path | None = None,
    now: datetime | None = None,
    expiry: dict[str, timedelta] | None = None,
) -> Path:
    """Create a repository in `repo_dir` (new or empty): a key per role, root version 1 and
    empty targets, snapshot and timestamp. The root key goes to `root_key_dir` (removable
    media, kept offline) when given. Returns the root.json to provision buses with."""
    paths = _Paths(Path(repo_dir))
    when = _now(now)
    lifetimes = {**EXPIRY, **(expiry or {})}
    if paths.metadata.exists() or paths.keys.exists():
        raise ReleaseRepoError(f"{paths.root} already holds a repository; not overwritten")
    root_key = Path(root_key_dir) / "root.pem" if root_key_dir else paths.key(Root.type)
    if root_key.exists():
        raise ReleaseRepoError(f"{root_key} exists; a root key is never overwritten")
    made = [f for f in (paths.keys, paths.metadata, paths.targets) if not f.exists()]
    try:
        return _create(paths, root_key, when, lifetimes)
    except BaseException:  # nothing half made stays behind: `init` can simply run again
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        root_key.unlink(missing_ok=True)
        raise


def _create(paths: _Paths, root_key: Path, when: datetime, lifetimes: dict[str, timedelta]) -> Path:
    for folder in (paths.keys, paths.metadata, paths.targets):
        folder.mkdir(parents=True, exist_ok=True)
    paths.keys.chmod(0o700)
    root_key.parent.mkdir(parents=True, exist_ok=True)
    signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
    for role, signer in signers.items():
        _write_private(root_key if role == Root.type else paths.key(role), signer.private_bytes)
    root = Root(expires=when + lifetimes[Root.type], consistent_snapshot=True)
    for role, signer in signers.items():
        root.add_key(signer.public_key, role)
    with _locked(paths):
        root_md = Metadata(root)
        root_md.sign(signers[Root.type])
        _write(root_md, paths.metadata / f"{root.version}.root.json")
        _write(root_md, paths.metadata / "root.json")
        targets = Metadata(Targets(expires=when + lifetimes[Targets.type]))
        _publish(paths, targets, signers, when, lifetimes)
    return paths.metadata / "root.json"


def add(
    repo_dir: Path,
    release_tar: Path,
    *,
    now: datetime | None = None,
    targets_key: Path | None = None,
) -> Release:
    """Sign the release tar `release_tar` into the repository: copied to targets/ under its
    hash, a new targets version listing it (custom metadata: {"version": ...}, from the tar's
    release.json), then new snapshot and timestamp versions. Refused: a tar without a valid
    manifest, or a version the repository holds already."""
    paths = _Paths(Path(repo_dir))
    when = _now(now)
    manifest = _manifest(Path(release_tar))
    name = target_name(manifest.version)
    with _locked(paths):
        root = _root(paths)
        targets = _current_targets(paths)
        if name in targets.signed.targets:
            raise ReleaseRepoError(f"release {manifest.version} is in the repository already")
        signers = {
            Targets.type: _signer(paths, root, Targets.type, targets_key),
            Snapshot.type: _signer(paths, root, Snapshot.type),
            Timestamp.type: _signer(paths, root, Timestamp.type),
        }
        info = TargetFile.from_file(name, str(release_tar), ["sha256"])
        info.unrecognized_fields["custom"] = {"version": manifest.version}
        sha = info.hashes["sha256"]
        stored = paths.targets / f"{sha}.{name}"
        _copy(Path(release_tar), stored)
        with stored.open("rb") as f:  # the copy is what buses get: check it, not the source
            info.verify_length_and_hashes(f)
        targets.signed.targets[name] = info
        targets.signed.version += 1
        targets.signed.expires = when + EXPIRY[Targets.type]
        _publish(paths, targets, signers, when, EXPIRY)
    return Release(manifest.version, name, info.length, sha)


def refresh_timestamp(
    repo_dir: Path, *, expires_in: timedelta = EXPIRY[Timestamp.type], now: datetime | None = None
) -> int:
    """Sign a new timestamp version valid for `expires_in` from `now`; returns its version.
    (A `now` in the past makes an already expired timestamp: tests.)"""
    paths = _Paths(Path(repo_dir))
    when = _now(now)
    with _locked(paths):
        root = _root(paths)
        signer = _signer(paths, root, Timestamp.type)
        timestamp = _load(paths.metadata / "timestamp.json", Timestamp)
        timestamp.signed.version += 1
        timestamp.signed.expires = when + expires_in
        timestamp.sign(signer)
        _write(timestamp, paths.metadata / "timestamp.json")
        return timestamp.signed.version


def keep_fresh(
    repo_dir: Path, *, now: datetime | None = None, timestamp_expires_in: timedelta | None = None
) -> list[str]:
    """What central's timestamp task does: re-sign the timestamp once half its lifetime has
    passed, and targets and snapshot within RESIGN_BEFORE of their expiry while their keys
    are here. Returns the roles re-signed (none: nothing was due)."""
    paths = _Paths(Path(repo_dir))
    when = _now(now)
    lifetime = timestamp_expires_in or EXPIRY[Timestamp.type]
    done: list[str] = []
    with _locked(paths):
        root = _root(paths)
        targets = _current_targets(paths)
        snapshot = _load(_snapshot_path(paths), Snapshot)
        stale = [
            md.signed.type
            for md in (targets, snapshot)
            if md.signed.expires - when < RESIGN_BEFORE and paths.key(md.signed.type).exists()
        ]
        if stale:
            signers = {r: _signer(paths, root, r) for r in (Snapshot.type, Timestamp.type)}
            if Targets.type in stale:
                signers[Targets.type] = _signer(paths, root, Targets.type)
                targets.signed.version += 1
                targets.signed.expires = when + EXPIRY[Targets.type]
            _publish(paths, targets, signers, when, {**EXPIRY, Timestamp.type: lifetime})
            done = [*stale, Snapshot.type, Timestamp.type]
    if not done:
        timestamp = _load(paths.metadata / "timestamp.json", Timestamp).signed
        if timestamp.expires - when < lifetime / 2:
            refresh_timestamp(paths.root, expires_in=lifetime, now=when)
            done = [Timestamp.type]
    return list(dict.fromkeys(done))


def list_releases(repo_dir: Path) -> list[Release]:
    """The releases the repository holds, oldest version first."""
    targets = _current_targets(_Paths(Path(repo_dir))).signed.targets
    out = []
    for name, info in targets.items():
        custom = info.custom if isinstance(info.custom, dict) else {}
        version = str(custom.get("version", ""))
        out.append(Release(version, name, info.length, info.hashes.get("sha256", "")))
    return sorted(out, key=lambda r: _sort_key(r.version))


def expiries(repo_dir: Path) -> dict[str, datetime]:
    """When each role's current metadata expires."""
    paths = _Paths(Path(repo_dir))
    return {
        Root.type: _root(paths).expires,
        Targets.type: _current_targets(paths).signed.expires,
        Snapshot.type: _load(_snapshot_path(paths), Snapshot).signed.expires,
        Timestamp.type: _load(paths.metadata / "timestamp.json", Timestamp).signed.expires,
    }


def has_key(repo_dir: Path, role: str) -> bool:
    """The repository holds `role`'s private key (central re-signs the timestamp if so)."""
    paths = _Paths(Path(repo_dir))
    return (paths.metadata / "timestamp.json").is_file() and paths.key(role).is_file()


# -- inside --


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _sort_key(version: str) -> tuple[int, ...]:
    try:
        return parse_version(version)
    except CodecError:
        return ()


def _manifest(release_tar: Path) -> Manifest:
    try:
        with release_tar.open("rb") as f:
            manifest = read_manifest(f)
    except OSError as exc:
        raise ReleaseRepoError(f"cannot read {release_tar}: {exc.strerror}") from exc
    except CodecError as exc:
        raise ReleaseRepoError(f"{release_tar}: {exc}") from exc
    _check_wheels(release_tar, manifest)
    return manifest


def _check_wheels(release_tar: Path, manifest: Manifest) -> None:
    """Every wheel the manifest lists is in the tar with its size and sha256: a broken
    release is refused here, once, not by every bus."""
    try:
        _check_members(release_tar, manifest)
    except (tarfile.TarError, EOFError) as exc:
        raise ReleaseRepoError(f"{release_tar}: a broken tar ({exc})") from exc


def _check_members(release_tar: Path, manifest: Manifest) -> None:
    with tarfile.open(release_tar, "r:") as tar:
        for wheel in manifest.wheels:
            try:
                member = tar.getmember(f"wheels/{wheel.file}")
            except KeyError:
                raise ReleaseRepoError(f"{release_tar}: wheels/{wheel.file} missing") from None
            data = tar.extractfile(member) if member.isfile() else None
            if data is None or member.size != wheel.size:
                raise ReleaseRepoError(f"{release_tar}: wheels/{wheel.file}: wrong size")
            digest = hashlib.sha256()
            while chunk := data.read(1 << 20):
                digest.update(chunk)
            if digest.hexdigest() != wheel.sha256:
                raise ReleaseRepoError(f"{release_tar}: wheels/{wheel.file}: wrong sha256")


def _publish(
    paths: _Paths,
    targets: Metadata[Targets],
    signers: dict[str, CryptoSigner],
    when: datetime,
    lifetimes: dict[str, timedelta],
) -> None:
    """Write `targets` (signed now if its signer is given), a new snapshot naming it and a
    new timestamp naming that: in this order, the timestamp last (it makes them current)."""
    if Targets.type in signers:
        targets.sign(signers[Targets.type])
        _write(targets, paths.metadata / f"{targets.signed.version}.targets.json")
    stamp = paths.metadata / "timestamp.json"
    snapshot_version = _snapshot_version(paths) + 1 if stamp.exists() else 1
    snapshot = Metadata(
        Snapshot(
            version=snapshot_version,
            expires=when + lifetimes[Snapshot.type],
            meta={"targets.json": MetaFile(version=targets.signed.version)},
        )
    )
    snapshot.sign(signers[Snapshot.type])
    _write(snapshot, paths.metadata / f"{snapshot_version}.snapshot.json")
    stamp_version = _load(stamp, Timestamp).signed.version + 1 if stamp.exists() else 1
    timestamp = Metadata(
        Timestamp(
            version=stamp_version,
            expires=when + lifetimes[Timestamp.type],
            snapshot_meta=MetaFile(version=snapshot_version),
        )
    )
    timestamp.sign(signers[Timestamp.type])
    _write(timestamp, stamp)


def _root(paths: _Paths) -> Root:
    if not (paths.metadata / "root.json").is_file():
        raise ReleaseRepoError(
            f"{paths.root} is no release repository (run `busfleet release init` first)"
        )
    return _load(paths.metadata / "root.json", Root).signed


def _snapshot_version(paths: _Paths) -> int:
    return _load(paths.metadata / "timestamp.json", Timestamp).signed.snapshot_meta.version


def _snapshot_path(paths: _Paths) -> Path:
    return paths.metadata / f"{_snapshot_version(paths)}.snapshot.json"


def _current_targets(paths: _Paths) -> Metadata[Targets]:
    _root(paths)
    snapshot = _load(_snapshot_path(paths), Snapshot).signed
    version = snapshot.meta["targets.json"].version
    return _load(paths.metadata / f"{version}.targets.json", Targets)


def _load(path: Path, kind: type[T]) -> Metadata[T]:
    try:
        md: Metadata[Any] = Metadata.from_file(str(path))
    except Exception as exc:  # StorageError, DeserializationError: both name the file
        raise ReleaseRepoError(f"cannot read {path}: {exc}") from exc
    if not isinstance(md.signed, kind):
        raise ReleaseRepoError(f"{path} holds {md.signed.type} metadata, not {kind.type}")
    return md


def _signer(paths: _Paths, root: Root, role: str, key_file: Path | None = None) -> CryptoSigner:
    """The signer of `role` from its PEM file, which must hold the key root names for it."""
    path = key_file or paths.key(role)
    key: Key = root.get_key(root.roles[role].keyids[0])
    try:
        private = load_pem_private_key(path.read_bytes(), None)
    except OSError as exc:
        raise ReleaseRepoError(f"the {role} key {path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ReleaseRepoError(f"the {role} key {path} is no PEM private key") from exc
    try:
        return CryptoSigner(private, key)  # type: ignore[arg-type]  # PrivateKeyTypes
    except Exception as exc:  # KeyMismatchError, ValueError: another key or another type
        raise ReleaseRepoError(f"{path} is not the {role} key root names") from exc


def _write(md: Metadata[Any], path: Path) -> None:
    _write_atomic(path, md.to_bytes(_JSON))


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_private(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())


def _copy(source: Path, dest: Path) -> None:
    tmp = dest.with_name(f".tmp-{dest.name}")
    shutil.copyfile(source, tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    paths.root.mkdir(parents=True, exist_ok=True)
    with (paths.root / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
