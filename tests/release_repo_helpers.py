"""Small release tars for the TUF tests: release.json and a dummy wheel, nothing to install.

The real release build (central/releases/build.py) is exercised by its own tests; here only
the repository and the TUF client matter. Also: the central HTTP routes of a repository on a
free 127.0.0.1 port.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from central.http.releases import releases_app
from central.http.server import serving
from protocols.release import MANIFEST, Manifest, WheelFile, target_name


def release_tar(
    folder: Path,
    version: str,
    *,
    manifest_version: str | None = None,
    manifest: bytes | None = None,
    filler: int = 2048,
) -> Path:
    """busfleet-{version}.tar in `folder` with a release.json saying `manifest_version`
    (default `version`) and one dummy wheel, or `manifest` as release.json's raw bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel_name = f"busfleet-{version}-py3-none-any.whl"
    wheel = (f"not really a wheel, version {version}\n".encode() * filler)[:filler]
    if manifest is None:
        manifest = msgspec.json.encode(
            Manifest(
                version=manifest_version or version,
                python="3.11",
                platform="linux-x86_64",
                created=time.time(),
                requirement=f"busfleet=={manifest_version or version}",
                wheels=[
                    WheelFile(
                        file=wheel_name, sha256=hashlib.sha256(wheel).hexdigest(), size=len(wheel)
                    )
                ],
            )
        )
    path = folder / target_name(version)
    with tarfile.open(path, "w") as tar:
        for name, data in ((MANIFEST, manifest), (f"wheels/{wheel_name}", wheel)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@contextlib.asynccontextmanager
async def repo_server(repo: Path) -> AsyncIterator[str]:
    """The repository's /releases/ routes served on a free port; yields the repo_url."""
    async with serving(releases_app(repo), "127.0.0.1", 0) as (host, port):
        yield f"http://{host}:{port}/releases"
