"""The bus's media cache: verified files named by their sha256, within a disk budget.

A file is in the cache only once its bytes hashed to its name: downloads grow in
`partial/<sha256>` and are renamed into place after the check, so a crash, a cut connection
or corrupted bytes never leave a file that could be shown. The directory is the index (it
survives power loss by construction); a file's mtime is its last use, for eviction.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("busfleet.onboard.ads")

# The extension says the type to the display (video or image) and to the local HTTP server.
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/svg+xml": "svg",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "text/html": "html",
}
MIME_OF = {ext: mime for mime, ext in EXTENSIONS.items()}
_NAME = re.compile(r"^([0-9a-f]{64})\.([a-z0-9]{1,5})$")
HASH_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class MediaCache:
    """Verified media files under `root`, at most `budget_bytes` of them (plus partials)."""

    def __init__(self, root: str | Path, budget_bytes: int) -> None:
        self.root = Path(root)
        self.partial_dir = self.root / "partial"
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self.budget_bytes = budget_bytes
        self.files: dict[str, Path] = {}  # sha256 -> verified file
        self.evicted = 0
        for path in self.root.iterdir():
            m = _NAME.match(path.name)
            if m and path.is_file():
                self.files[m.group(1)] = path

    def has(self, sha256: str) -> bool:
        return sha256 in self.files

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self.files

    def path(self, sha256: str) -> Path | None:
        return self.files.get(sha256)

    def partial(self, sha256: str) -> Path:
        return self.partial_dir / sha256

    def size(self) -> int:
        return sum(_size(p) for p in self.files.values())

    def adopt(self, sha256: str, mime: str) -> Path:
        """Move a complete partial into the cache after checking its hash.

        Raises ValueError (and deletes the partial) when the bytes are not what the hash says.
        """
        partial = self.partial(sha256)
        actual = sha256_file(partial)
        if actual != sha256:
            partial.unlink(missing_ok=True)
            raise ValueError(f"hash mismatch: expected {sha256[:12]}, got {actual[:12]}")
        target = self.root / f"{sha256}.{EXTENSIONS.get(mime, 'bin')}"
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
        _fsync_dir(self.root)
        self.files[sha256] = target
        return target

    def verify(self, sha256: str) -> bool:
        """Hash a cached file again; a file that no longer matches is removed."""
        path = self.files.get(sha256)
        if path is None:
            return False
        try:
            ok = sha256_file(path) == sha256
        except OSError:
            ok = False
        if not ok:
            log.warning("cached media %s is corrupt: removed", sha256[:12])
            self._remove(sha256)
        return ok

    def touch(self, sha256: str) -> None:
        """Mark a file as used now (eviction takes the least recently used first)."""
        path = self.files.get(sha256)
        if path is not None:
            with contextlib.suppress(OSError):
                os.utime(path)

    def evict(self, keep: Iterable[str], room_for: int = 0) -> list[str]:
        """Delete files not in `keep`, least recently used first, until the cache plus
        `room_for` bytes fits the budget. Partials not in `keep` go first. Returns the hashes."""
        keep = set(keep)
        for partial in self.partial_dir.iterdir():
            if partial.name not in keep:
                partial.unlink(missing_ok=True)
        total = self.size() + room_for
        victims = sorted(
            (s for s in self.files if s not in keep), key=lambda s: _mtime(self.files[s])
        )
        gone = []
        for sha in victims:
            if total <= self.budget_bytes:
                break
            total -= _size(self.files[sha])
            self._remove(sha)
            gone.append(sha)
        self.evicted += len(gone)
        return gone

    def prune(self, keep: Iterable[str]) -> list[str]:
        """Delete every file and partial not in `keep`, whatever the budget (a timetable keeps
        only the version it runs and the one staged). Returns the hashes of the files removed."""
        keep = set(keep)
        for partial in self.partial_dir.iterdir():
            if partial.name not in keep:
                partial.unlink(missing_ok=True)
        gone = [sha for sha in self.files if sha not in keep]
        for sha in gone:
            self._remove(sha)
        self.evicted += len(gone)
        return gone

    def _remove(self, sha256: str) -> None:
        path = self.files.pop(sha256, None)
        if path is not None:
            path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
