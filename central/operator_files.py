"""Files read for an import, by a tool or by central: read safely or refused.

No request names a path on central's machine any more (files are uploaded: central/uploads.py),
but the tools that read a dispatcher's files and central reading its staged uploads follow the
same rule: only regular files are read (a FIFO would block forever, /dev/zero would never end),
and at most `limit` bytes, counted while reading, whatever the file's size claims.
What central keeps by content (media, timetable packages) is written with `write_durably`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from central.errors import Refused

__all__ = ["NotAFile", "check_regular", "read_capped", "write_durably"]


def write_durably(target: Path, data: bytes) -> None:
    """`data` as `target`: written beside it, fsynced, renamed over it, so that a crash never
    leaves a half file under its name (a content hash, for the media and timetable packages)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".writing-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class NotAFile(Refused):
    """The path names no regular file (missing, a folder, a device, a FIFO) or one too big."""


def check_regular(path: str | Path, *, folders: bool = False) -> Path:
    """`path` if it is a regular file (or, with `folders`, a folder); NotAFile otherwise."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise NotAFile(f"cannot read {path}: {exc.strerror}") from exc
    if stat.S_ISREG(mode) or (folders and stat.S_ISDIR(mode)):
        return path
    raise NotAFile(f"{path} is not a regular file")


def read_capped(path: str | Path, limit: int) -> bytes:
    """The whole file, at most `limit` bytes (NotAFile beyond, or if it is no regular file)."""
    path = check_regular(path)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise NotAFile(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > limit:
        raise NotAFile(f"{path} is larger than {limit} bytes")
    return data
