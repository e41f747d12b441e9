"""The bus's TUF fetch (onboard/update/fetch.py) against a real repository served over HTTP.

Every refusal comes from real metadata and bytes as an attacker or a broken server would
present them; the real python-tuf client decides, and the bus says why in plain words.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Timestamp
from tuf.api.serialization.json import JSONSerializer

from central.releases import repository
from onboard.errors import FetchFailed, ReleaseRefused
from onboard.update.fetch import fetch_release
from protocols.release import target_name
from protocols.schemas import ReleaseRef
from tests.release_repo_helpers import release_tar, repo_server


def ref(version: str) -> ReleaseRef:
    return ReleaseRef(version=version, target=target_name(version))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository holding release 0.2.0 (root key kept apart, as on a USB stick)."""
    path = tmp_path / "repo"
    repository.init(path, root_key_dir=tmp_path / "usb")
    repository.add(path, release_tar(tmp_path / "dist", "0.2.0"))
    return path


async def fetch(
    repo: Path, repo_url: str, tmp_path: Path, version: str, *, running: str = "0.1.0"
) -> Path:
    return await asyncio.to_thread(
        fetch_release,
        ref(version),
        repo_url=repo_url,
        trusted_root=repo / "metadata" / "1.root.json",
        work_dir=tmp_path / "bus",
        running=running,
    )


def stored_target(repo: Path, version: str) -> Path:
    (path,) = (repo / "targets").glob(f"*.{target_name(version)}")
    return path


async def test_a_signed_newer_release_is_fetched_and_verified(repo: Path, tmp_path: Path) -> None:
    async with repo_server(repo) as url:
        path = await fetch(repo, url, tmp_path, "0.2.0")
        assert path == tmp_path / "bus" / "targets" / "busfleet-0.2.0.tar"
        assert path.read_bytes() == stored_target(repo, "0.2.0").read_bytes()
        # Fetched again: the verified copy is used, and the answer is the same.
        assert await fetch(repo, url, tmp_path, "0.2.0") == path


async def test_only_the_wanted_release_stays_on_the_bus(repo: Path, tmp_path: Path) -> None:
    async with repo_server(repo) as url:
        await fetch(repo, url, tmp_path, "0.2.0")
        repository.add(repo, release_tar(tmp_path / "dist", "0.3.0"))
        path = await fetch(repo, url, tmp_path, "0.3.0")
    assert sorted(p.name for p in path.parent.iterdir()) == ["busfleet-0.3.0.tar"]


async def test_a_target_changed_after_signing_is_refused(repo: Path, tmp_path: Path) -> None:
    stored = stored_target(repo, "0.2.0")
    data = bytearray(stored.read_bytes())
    data[-600] ^= 0x01  # one bit of the wheel, same length: only the hash can tell
    stored.write_bytes(bytes(data))
    async with repo_server(repo) as url:
        with pytest.raises(ReleaseRefused, match="tampered: wrong hash or length") as refused:
            await fetch(repo, url, tmp_path, "0.2.0")
        assert refused.value.lasting is True
    assert list((tmp_path / "bus" / "targets").iterdir()) == []  # nothing unverified kept


async def test_an_expired_timestamp_is_refused(repo: Path, tmp_path: Path) -> None:
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    repository.refresh_timestamp(repo, expires_in=timedelta(days=1), now=two_days_ago)
    async with repo_server(repo) as url:
        with pytest.raises(ReleaseRefused, match="expired metadata") as refused:
            await fetch(repo, url, tmp_path, "0.2.0")
        assert refused.value.lasting is False


@pytest.mark.parametrize("running", ["0.3.0", "0.2.0"])
async def test_a_properly_signed_release_not_newer_than_the_running_one_is_refused(
    repo: Path, tmp_path: Path, running: str
) -> None:
    async with repo_server(repo) as url:
        with pytest.raises(ReleaseRefused, match=r"older release: 0\.2\.0 is not newer") as refused:
            await fetch(repo, url, tmp_path, "0.2.0", running=running)
        assert refused.value.lasting is True
    assert not (tmp_path / "bus" / "targets" / "busfleet-0.2.0.tar").exists()


async def test_older_metadata_than_the_bus_has_seen_is_refused(repo: Path, tmp_path: Path) -> None:
    timestamp = repo / "metadata" / "timestamp.json"
    old = timestamp.read_bytes()  # validly signed, not expired: only its version is old
    repository.refresh_timestamp(repo)
    async with repo_server(repo) as url:
        await fetch(repo, url, tmp_path, "0.2.0")  # the bus has seen the newer timestamp
        timestamp.write_bytes(old)
        with pytest.raises(ReleaseRefused, match="metadata rollback") as refused:
            await fetch(repo, url, tmp_path, "0.2.0")
        assert refused.value.lasting is False


async def test_a_timestamp_signed_by_another_key_is_refused(repo: Path, tmp_path: Path) -> None:
    path = repo / "metadata" / "timestamp.json"
    forged = Metadata[Timestamp].from_file(str(path))
    forged.signed.version += 1
    forged.sign(CryptoSigner.generate_ed25519())
    path.write_bytes(forged.to_bytes(JSONSerializer()))
    async with repo_server(repo) as url:
        with pytest.raises(ReleaseRefused, match="bad signature") as refused:
            await fetch(repo, url, tmp_path, "0.2.0")
        assert refused.value.lasting is False


async def test_a_release_the_repository_does_not_list_is_refused(
    repo: Path, tmp_path: Path
) -> None:
    # The tar is on the server, but no signed metadata names it.
    unsigned = release_tar(tmp_path / "dist", "0.4.0")
    (repo / "targets" / unsigned.name).write_bytes(unsigned.read_bytes())
    async with repo_server(repo) as url:
        with pytest.raises(
            ReleaseRefused, match=r"unknown target: .* busfleet-0\.4\.0\.tar"
        ) as refused:
            await fetch(repo, url, tmp_path, "0.4.0")
        assert refused.value.lasting is False


async def test_a_server_that_is_down_fails_the_fetch_without_refusing(
    repo: Path, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(FetchFailed) as failed:
        await fetch(repo, f"http://127.0.0.1:{port}/releases", tmp_path, "0.2.0")
    assert not isinstance(failed.value, ReleaseRefused)
    # Up again: the same bus fetches it.
    async with repo_server(repo) as url:
        assert (await fetch(repo, url, tmp_path, "0.2.0")).is_file()


async def test_a_bus_without_its_trusted_root_refuses(repo: Path, tmp_path: Path) -> None:
    async with repo_server(repo) as url:
        with pytest.raises(ReleaseRefused, match="no trusted root"):
            await asyncio.to_thread(
                fetch_release,
                ref("0.2.0"),
                repo_url=url,
                trusted_root=tmp_path / "missing-root.json",
                work_dir=tmp_path / "bus",
                running="0.1.0",
            )
