"""The bus's TUF client: fetch the release central names, verified by python-tuf's ngclient.

`fetch_release` refreshes the repository's metadata (root → timestamp → snapshot → targets:
signatures, expiry, versions that only grow), looks the target up, checks the version the
signed metadata gives it, downloads it (length and sha256 checked against the signed targets
metadata) unless the verified copy is here already, and checks that the tar's own release.json
says the same version. A version not newer than the running one is refused before anything is
downloaded: an old, properly signed release is a rollback attack (or a mistake) all the same.

The trust comes from `trusted_root`, the root.json copied to the bus at provisioning (agent.toml
`update.trusted_root`); newer roots are accepted only as the repository's signed successors.
The metadata the bus has seen stays in work_dir/metadata, so a server that later offers older
metadata (a rollback, a freeze) is refused. work_dir/targets keeps at most the wanted release.

Synchronous (urllib3 underneath): the caller runs it in a thread, one at a time per work_dir.
Two outcomes besides the path: `ReleaseRefused` (terminal for that version; the message says
why in plain words) and `FetchFailed` (the network or the server: try again later).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater, UpdaterConfig

from onboard.errors import FetchFailed, ReleaseRefused
from protocols.errors import CodecError
from protocols.release import parse_version, target_name
from protocols.release_tar import read_manifest
from protocols.schemas import ReleaseRef

__all__ = ["fetch_release"]


def fetch_release(
    ref: ReleaseRef, *, repo_url: str, trusted_root: Path, work_dir: Path, running: str
) -> Path:
    """The verified release tar of `ref` in work_dir (synchronous: run it in a thread).

    ReleaseRefused: it must never run (the message says why); FetchFailed: try again later."""
    _check_newer(ref, running)
    try:
        root = Path(trusted_root).read_bytes()
    except OSError as exc:
        raise ReleaseRefused(
            f"no trusted root to verify releases with ({trusted_root}: {exc.strerror})",
            lasting=False,  # the bus's set-up, not the release: fixed, it may be fetched
        ) from exc
    metadata_dir = Path(work_dir) / "metadata"
    targets_dir = Path(work_dir) / "targets"
    try:
        metadata_dir.mkdir(parents=True, exist_ok=True)
        targets_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchFailed(f"cannot write {work_dir}: {exc.strerror}") from exc
    base = repo_url.rstrip("/")
    # Metadata trouble is the repository's state now, not this release's (lasting=False).
    with _only_fetch(Path(work_dir)), _plain_words(ref, lasting=False):
        updater = Updater(
            str(metadata_dir),
            f"{base}/metadata/",
            str(targets_dir),
            f"{base}/targets/",
            config=UpdaterConfig(app_user_agent=f"busfleet/{running}"),
            bootstrap=root,
        )
        updater.refresh()
        info = updater.get_targetinfo(ref.target)
        if info is None:
            raise ReleaseRefused(
                f"unknown target: the repository's signed metadata does not list {ref.target}",
                lasting=False,  # not signed in yet, perhaps
            )
        _check_signed_version(ref, info)
        _keep_only(targets_dir, ref.target)
        with _plain_words(ref, lasting=True):  # the target's own bytes: that release, for good
            path = Path(updater.find_cached_target(info) or updater.download_target(info))
        _check_manifest(ref, path)
        return path


def _check_newer(ref: ReleaseRef, running: str) -> None:
    """A release must be newer than the running one, and be the target of its version."""
    try:
        wanted = parse_version(ref.version)
        if ref.target != target_name(ref.version):
            raise ReleaseRefused(
                f"release {ref.version} is named {ref.target}, not {target_name(ref.version)}"
            )
    except CodecError as exc:
        raise ReleaseRefused(f"bad release version: {exc}") from exc
    try:
        current = parse_version(running)
    except CodecError as exc:
        raise ReleaseRefused(
            f"the running version {running!r} is no release version: cannot tell whether "
            f"{ref.version} is newer"
        ) from exc
    if wanted <= current:
        raise ReleaseRefused(
            f"older release: {ref.version} is not newer than the running {running} "
            "(a rollback is never installed)"
        )


def _check_signed_version(ref: ReleaseRef, info: TargetFile) -> None:
    custom = info.custom if isinstance(info.custom, dict) else {}
    signed = custom.get("version")
    if signed != ref.version:
        raise ReleaseRefused(
            f"version mismatch: the signed metadata says {ref.target} is version {signed!r}, "
            f"central asked for {ref.version}"
        )


def _check_manifest(ref: ReleaseRef, path: Path) -> None:
    """The verified tar's release.json must say the version its metadata says."""
    try:
        with path.open("rb") as f:
            manifest = read_manifest(f)
        if manifest.version != ref.version:
            raise ReleaseRefused(
                f"bad manifest: {ref.target}'s release.json says version {manifest.version}, "
                f"its signed metadata {ref.version}"
            )
    except CodecError as exc:
        path.unlink(missing_ok=True)
        raise ReleaseRefused(f"bad manifest in {ref.target}: {exc}") from exc
    except ReleaseRefused:
        path.unlink(missing_ok=True)
        raise


def _keep_only(targets_dir: Path, name: str) -> None:
    """Old releases go before a new one comes: a bus's disk holds one download at a time."""
    for entry in targets_dir.iterdir():
        if entry.name != name:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


@contextlib.contextmanager
def _only_fetch(work_dir: Path) -> Iterator[None]:
    """One fetch per work_dir at a time (ngclient's metadata folder is single-instance)."""
    with (work_dir / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FetchFailed(f"another fetch uses {work_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# What each of python-tuf's refusals means, most specific first.
_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (tuf_errors.ExpiredMetadataError, "expired metadata"),
    (tuf_errors.UnsignedMetadataError, "bad signature"),
    (tuf_errors.BadVersionNumberError, "metadata rollback (older than the bus has seen)"),
    (tuf_errors.LengthOrHashMismatchError, "tampered: wrong hash or length"),
    (tuf_errors.DownloadLengthMismatchError, "tampered: longer than its signed length"),
    (tuf_errors.RepositoryError, "invalid metadata"),
)


@contextlib.contextmanager
def _plain_words(ref: ReleaseRef, *, lasting: bool) -> Iterator[None]:
    """python-tuf's errors as ours: a refusal (`lasting` as the caller says: the target's own
    bytes, or the repository's metadata now) or a failure (try again)."""
    try:
        yield
    except (ReleaseRefused, FetchFailed):
        raise
    except (tuf_errors.RepositoryError, tuf_errors.DownloadLengthMismatchError) as exc:
        what = next(words for kind, words in _REFUSALS if isinstance(exc, kind))
        raise ReleaseRefused(f"{what}: {ref.target} refused ({exc})", lasting=lasting) from exc
    except tuf_errors.DownloadError as exc:
        cause = exc.__cause__ or exc.__context__
        detail = f"{exc}" + (f" ({cause})" if cause else "")
        raise FetchFailed(f"cannot fetch {ref.target}: {detail}") from exc
    except urllib3.exceptions.HTTPError as exc:  # cut mid-stream: ngclient lets these through
        raise FetchFailed(f"cannot fetch {ref.target}: {exc}") from exc
    except OSError as exc:  # our disk (full, read-only)
        raise FetchFailed(f"cannot store {ref.target}: {exc}") from exc
