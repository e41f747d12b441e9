"""The bus's TUF client: fetch a release central names, verified (the tufrepo helper's module).

Placeholder with the agreed signature so that the update runtime can be written against it.
"""

from __future__ import annotations

from pathlib import Path

from onboard.errors import FetchFailed
from protocols.schemas import ReleaseRef


def fetch_release(
    ref: ReleaseRef, *, repo_url: str, trusted_root: Path, work_dir: Path, running: str
) -> Path:
    """The verified release tar of `ref` in work_dir (synchronous: run it in a thread).

    ReleaseRefused: it must never run (the message says why); FetchFailed: try again later."""
    raise FetchFailed("no TUF client yet")
