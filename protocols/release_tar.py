"""The manifest of a release tar (protocols/release.py), read from the tar's bytes.

Shared by central, which refuses to sign a release whose manifest is missing or invalid
(central/releases/repository.py), and the bus, which checks that the verified tar says the
version TUF's metadata says (onboard/update/fetch.py). Reads only the one member; the caller
opens the file.
"""

from __future__ import annotations

import tarfile
from typing import IO

import msgspec

from protocols.errors import CodecError
from protocols.release import MANIFEST, Manifest, parse_version

__all__ = ["MAX_MANIFEST_BYTES", "read_manifest"]

MAX_MANIFEST_BYTES = 1 << 20  # a manifest lists some dozens of wheels: a few kB


def read_manifest(fileobj: IO[bytes]) -> Manifest:
    """The release's `release.json`, validated; CodecError (saying what is wrong) if the
    bytes are no tar, it has no manifest, or the manifest is not a valid one."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tar:
            try:
                member = tar.getmember(MANIFEST)
            except KeyError:
                raise CodecError(f"no {MANIFEST} in the release") from None
            if not member.isfile():
                raise CodecError(f"{MANIFEST} is not a file")
            if member.size > MAX_MANIFEST_BYTES:
                raise CodecError(f"{MANIFEST} is {member.size} bytes, more than a manifest")
            extracted = tar.extractfile(member)
            assert extracted is not None  # a regular file
            data = extracted.read()
    except (tarfile.TarError, EOFError) as exc:
        raise CodecError(f"not a release tar ({exc})") from exc
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"invalid {MANIFEST}: {exc}") from exc
    parse_version(manifest.version)  # CodecError: not a release version
    if manifest.name != "busfleet":
        raise CodecError(f"{MANIFEST} names {manifest.name!r}, not busfleet")
    return manifest
