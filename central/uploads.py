"""Files that dispatchers upload for an import, staged under central's data directory.

An import request never names a path on central's machine (that would let a dispatcher read
or probe central's files): the tool on the dispatcher's machine reads the file and sends it
in pieces (`protocols.requests.Upload`), and the import names the upload. Here the pieces are
checked and written: in order, within a cap per upload and one for all uploads together, and
the finished file must have the size and sha256 the sender announced. Uploads are kept per
dispatcher (the name in the request's topic): one dispatcher cannot name another's. An
upload that is neither finished nor used within `expire_s` of its last piece is deleted.

State lives in the files alone (`<dir>/<user key>/<id>.part` while it comes, `<id>.done`
when verified; the announced size beside it), so that the workers of a central group, which
may each receive some pieces, and a restarted central all see the same uploads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from central.config import CentralConfig
from central.errors import Refused
from central.store.backend import is_postgres_url
from protocols.requests import Upload
from protocols.schemas import Scalar

__all__ = [
    "MAX_TOTAL_BYTES",
    "MAX_UPLOAD_BYTES",
    "MAX_USER_BYTES",
    "UploadRefused",
    "Uploads",
    "staging_dir",
]

MAX_UPLOAD_BYTES = 1024 * 2**20  # one file: a national GTFS zip, a long video ad
MAX_TOTAL_BYTES = 4 * 2**30  # every upload staged at once
MAX_USER_BYTES = 2 * 2**30  # one dispatcher's: nobody fills the space for everyone
EXPIRE_S = 3600.0


class UploadRefused(Refused):
    """A piece or an upload central will not take; the message says why."""


def staging_dir(config: CentralConfig) -> Path:
    """Where uploads are staged: beside the database (or the media library, for a database
    in memory or on a PostgreSQL server)."""
    no_file = config.db == ":memory:" or is_postgres_url(config.db)
    base = Path(config.media_dir) if no_file else Path(config.db)
    return base.resolve().parent / "uploads"


class Uploads:
    def __init__(
        self,
        root: str | Path,
        *,
        max_bytes: int = MAX_UPLOAD_BYTES,
        max_total: int = MAX_TOTAL_BYTES,
        max_per_user: int = MAX_USER_BYTES,
        expire_s: float = EXPIRE_S,
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_total = max_total
        self.expire_s = expire_s
        self.max_per_user = max_per_user
        self._lock = threading.Lock()  # handlers run on threads; pieces of one upload in turn

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One piece at a time: across the threads of this process and, by a lock file,
        across the processes of a central group that share the directory."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with (self.root / ".lock").open("a+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
                yield

    def _dir(self, user: str) -> Path:
        # A digest, not the name: whatever a topic level allows is no path component here.
        return self.root / hashlib.sha256(user.encode()).hexdigest()[:32]

    def receive(self, user: str, piece: Upload) -> dict[str, Scalar]:
        """Write one piece; the answer says how much has come and whether the file is done."""
        with self._locked():
            self.sweep()
            folder = self._dir(user)
            part, size_file = folder / f"{piece.id}.part", folder / f"{piece.id}.size"
            if piece.offset == 0:
                self._start(folder, piece)
            elif not part.exists():
                raise UploadRefused(f"no upload {piece.id} in progress (expired, or never begun)")
            total = int(size_file.read_text())
            have = part.stat().st_size
            if piece.total != total:
                raise UploadRefused(f"upload {piece.id} is of {total} bytes, not {piece.total}")
            if piece.offset != have:
                what = f"expected offset {have}, not {piece.offset}"
                raise UploadRefused(f"upload {piece.id}: {what}")
            if have + len(piece.data) > total:
                raise UploadRefused(f"upload {piece.id}: more than the {total} bytes announced")
            with part.open("ab") as f:
                f.write(piece.data)
            have += len(piece.data)
            if have == total:
                self._finish(part, piece)
            return {"upload": piece.id, "received": have, "complete": have == total}

    def _start(self, folder: Path, piece: Upload) -> None:
        if piece.total > self.max_bytes:
            raise UploadRefused(
                f"a file of {piece.total} bytes is over central's cap of {self.max_bytes} bytes"
            )
        for old in (f"{piece.id}.part", f"{piece.id}.done", f"{piece.id}.size"):
            (folder / old).unlink(missing_ok=True)  # begun again from the start
        mine = self._staged(folder)
        if mine + piece.total > self.max_per_user:
            raise UploadRefused(
                f"your uploads take {mine} of your {self.max_per_user} bytes; import or let "
                "them expire first"
            )
        staged = self._staged()
        if staged + piece.total > self.max_total:
            raise UploadRefused(
                f"central's upload space is full ({staged} of {self.max_total} bytes staged); "
                "try again when other uploads are imported or expired"
            )
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{piece.id}.size").write_text(str(piece.total))
        (folder / f"{piece.id}.part").write_bytes(b"")

    def _finish(self, part: Path, piece: Upload) -> None:
        size_file = part.with_suffix(".size")
        if piece.sha256 is None:
            part.unlink()
            size_file.unlink(missing_ok=True)  # its announced size no longer takes space
            raise UploadRefused(f"upload {piece.id}: the last piece carries the file's sha256")
        digest = hashlib.sha256()
        with part.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != piece.sha256:
            part.unlink()
            size_file.unlink(missing_ok=True)
            raise UploadRefused(f"upload {piece.id}: sha256 differs: the file was damaged")
        os.replace(part, part.with_suffix(".done"))

    def _staged(self, folder: Path | None = None) -> int:
        """Bytes announced by every upload staged now (finished or coming), or by those of
        one dispatcher's `folder`."""
        total = 0
        for size_file in (folder or self.root).glob("*.size" if folder else "*/*.size"):
            with contextlib.suppress(OSError, ValueError):
                total += int(size_file.read_text())
        return total

    def sweep(self, now: float | None = None) -> int:
        """Delete uploads untouched for `expire_s` (by the files' times: the real clock, not
        a request's); how many files went."""
        now = time.time() if now is None else now
        gone = 0
        for path in self.root.glob("*/*.size"):
            stem = path.with_suffix("")
            files = [stem.with_suffix(s) for s in (".part", ".done")]
            touched = max((f.stat().st_mtime for f in (path, *files) if f.exists()), default=0.0)
            if touched < now - self.expire_s:
                for f in (*files, path):
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
                        gone += 1
        return gone

    @contextlib.contextmanager
    def finished(self, user: str, upload_id: str) -> Iterator[Path]:
        """The verified file of this user's upload, for the block; deleted after it."""
        folder = self._dir(user)
        done = folder / f"{upload_id}.done"
        with self._locked():
            if not done.exists():
                raise UploadRefused(
                    f"no finished upload {upload_id} of yours (uploads expire after "
                    f"{self.expire_s / 60:.0f} minutes)"
                )
            os.utime(done)  # in use: not for the sweep
        try:
            yield done
        finally:
            with self._locked():
                done.unlink(missing_ok=True)
                (folder / f"{upload_id}.size").unlink(missing_ok=True)
