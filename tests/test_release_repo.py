"""Central's TUF repository (central/releases/repository.py), `busfleet release`, and the
repository served read-only by central's real HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import shutil
import socket
import stat
import tarfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from busfleet.cli import main
from central.config import CentralConfig
from central.http.server import run_http
from central.releases import repository
from central.releases.repository import ReleaseRepoError
from central.service.release_timestamp import TimestampTask
from central.store.pg_store import open_store
from tests.release_repo_helpers import release_tar, repo_server


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    repository.init(path, root_key_dir=tmp_path / "usb")
    return path


def metadata(repo: Path, name: str) -> Metadata:  # type: ignore[type-arg]  # any role
    return Metadata.from_file(str(repo / "metadata" / name))


def current(repo: Path) -> tuple[Metadata[Timestamp], Metadata[Snapshot], Metadata[Targets]]:
    timestamp: Metadata[Timestamp] = metadata(repo, "timestamp.json")
    snapshot: Metadata[Snapshot] = metadata(
        repo, f"{timestamp.signed.snapshot_meta.version}.snapshot.json"
    )
    targets: Metadata[Targets] = metadata(
        repo, f"{snapshot.signed.meta['targets.json'].version}.targets.json"
    )
    return timestamp, snapshot, targets


def test_init_keeps_each_key_private_and_the_root_key_apart(repo: Path, tmp_path: Path) -> None:
    keys = repo / "keys"
    assert sorted(p.name for p in keys.iterdir()) == [
        "snapshot.pem",
        "targets.pem",
        "timestamp.pem",
    ]
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for pem in [*keys.iterdir(), tmp_path / "usb" / "root.pem"]:
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600, pem
    root: Metadata[Root] = metadata(repo, "1.root.json")
    assert (repo / "metadata" / "root.json").read_bytes() == (
        repo / "metadata" / "1.root.json"
    ).read_bytes()
    assert root.signed.consistent_snapshot  # what ngclient then fetches: N.snapshot.json ...
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    timestamp, snapshot, targets = current(repo)
    for md in (timestamp, snapshot, targets):
        root.signed.verify_delegate(md.signed.type, md.signed_bytes, md.signatures)
    assert targets.signed.targets == {}


def test_init_never_overwrites_a_repository_or_a_root_key(repo: Path, tmp_path: Path) -> None:
    before = (repo / "keys" / "targets.pem").read_bytes()
    with pytest.raises(ReleaseRepoError, match="already holds a repository"):
        repository.init(repo)
    with pytest.raises(ReleaseRepoError, match="a root key is never overwritten"):
        repository.init(tmp_path / "other", root_key_dir=tmp_path / "usb")
    assert (repo / "keys" / "targets.pem").read_bytes() == before
    assert not (tmp_path / "other" / "keys").exists()


def test_add_signs_a_release_with_its_version_without_the_root_key(
    repo: Path, tmp_path: Path
) -> None:
    shutil.rmtree(tmp_path / "usb")  # the root key is offline
    stamp_before = current(repo)[0].signed.version
    release = repository.add(repo, release_tar(tmp_path / "dist", "0.2.0"))
    assert release.version == "0.2.0" and release.target == "busfleet-0.2.0.tar"
    stored = repo / "targets" / f"{release.sha256}.busfleet-0.2.0.tar"
    assert stored.read_bytes() == (tmp_path / "dist" / "busfleet-0.2.0.tar").read_bytes()
    timestamp, snapshot, targets = current(repo)
    info = targets.signed.targets["busfleet-0.2.0.tar"]
    assert info.custom == {"version": "0.2.0"}
    assert (info.length, info.hashes) == (stored.stat().st_size, {"sha256": release.sha256})
    assert timestamp.signed.version == stamp_before + 1
    root: Metadata[Root] = metadata(repo, "root.json")
    for md in (timestamp, snapshot, targets):
        root.signed.verify_delegate(md.signed.type, md.signed_bytes, md.signatures)
    repository.add(repo, release_tar(tmp_path / "dist", "0.10.0"))
    repository.add(repo, release_tar(tmp_path / "dist", "0.9.1"))
    assert [r.version for r in repository.list_releases(repo)] == ["0.2.0", "0.9.1", "0.10.0"]


def _no_manifest(folder: Path) -> Path:
    wheel = release_tar(folder / "x", "0.5.0")
    path = folder / "busfleet-0.5.0.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(wheel, arcname="wheels/other.whl")
    return path


def _wrong_wheel(folder: Path) -> Path:
    good = release_tar(folder / "good", "0.5.0")
    path = folder / "busfleet-0.5.0.tar"
    with tarfile.open(good) as src, tarfile.open(path, "w") as tar:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]  # files only
            if member.name.startswith("wheels/"):
                data = data[:-1] + bytes([data[-1] ^ 1])  # same size, another hash
            tar.addfile(member, io.BytesIO(data))
    return path


def _no_tar(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "busfleet-0.5.0.tar"
    path.write_bytes(b"not a tar at all" * 100)
    return path


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: release_tar(d, "0.2.0"), "release 0.2.0 is in the repository already"),
        (_no_manifest, "no release.json in the release"),
        (lambda d: release_tar(d, "0.5.0", manifest=b"{not json"), "invalid release.json"),
        (lambda d: release_tar(d, "0.5.0", manifest_version="five"), "not a release version"),
        (_wrong_wheel, "wrong sha256"),
        (_no_tar, "not a release tar"),
    ],
    ids=["same-version", "no-manifest", "bad-json", "bad-version", "wrong-wheel", "no-tar"],
)
def test_add_refuses_a_tar_it_cannot_vouch_for_and_changes_nothing(
    repo: Path, tmp_path: Path, make: object, why: str
) -> None:
    repository.add(repo, release_tar(tmp_path / "dist", "0.2.0"))
    before = sorted((p.name, p.read_bytes()) for p in (repo / "metadata").iterdir())
    targets_before = sorted(p.name for p in (repo / "targets").iterdir())
    with pytest.raises(ReleaseRepoError, match=why):
        repository.add(repo, make(tmp_path / "bad"))  # type: ignore[operator]
    assert sorted((p.name, p.read_bytes()) for p in (repo / "metadata").iterdir()) == before
    assert sorted(p.name for p in (repo / "targets").iterdir()) == targets_before


def test_a_key_that_root_does_not_name_signs_nothing(repo: Path) -> None:
    stranger = CryptoSigner.generate_ed25519()
    key = repo / "keys" / "timestamp.pem"
    key.write_bytes(stranger.private_bytes)
    before = (repo / "metadata" / "timestamp.json").read_bytes()
    with pytest.raises(ReleaseRepoError, match="not the timestamp key root names"):
        repository.refresh_timestamp(repo)
    assert (repo / "metadata" / "timestamp.json").read_bytes() == before


def test_keep_fresh_signs_only_what_is_due(repo: Path) -> None:
    t0 = datetime.now(UTC)
    version = current(repo)[0].signed.version
    assert repository.keep_fresh(repo, now=t0 + timedelta(hours=1)) == []
    assert current(repo)[0].signed.version == version
    assert repository.keep_fresh(repo, now=t0 + timedelta(hours=13)) == ["timestamp"]
    timestamp, _snapshot, targets = current(repo)
    assert timestamp.signed.version == version + 1
    assert timestamp.signed.expires > t0 + timedelta(hours=36)
    late = targets.signed.expires - timedelta(days=10)
    assert repository.keep_fresh(repo, now=late) == ["targets", "snapshot", "timestamp"]
    _timestamp, snapshot, targets2 = current(repo)
    assert targets2.signed.version == targets.signed.version + 1
    assert snapshot.signed.expires > late + timedelta(days=300)


async def test_the_timestamp_task_re_signs_a_timestamp_about_to_expire(repo: Path) -> None:
    repository.refresh_timestamp(repo, expires_in=timedelta(hours=1))
    version = current(repo)[0].signed.version
    task = TimestampTask(repo, live=lambda: True)
    assert await task.check_once() == ["timestamp"]
    assert current(repo)[0].signed.version == version + 1
    assert current(repo)[0].signed.expires > datetime.now(UTC) + timedelta(hours=20)
    (repo / "keys" / "timestamp.pem").unlink()  # signed elsewhere: the task does nothing
    await asyncio.wait_for(TimestampTask(repo, live=lambda: True).run(), 10)


def test_the_release_commands(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new"
    assert main(["release", "init", str(new), "--root-key-dir", str(tmp_path / "usb2")]) == 0
    out = capsys.readouterr().out
    assert f"provision buses with {new / 'metadata' / 'root.json'}" in out
    tar = release_tar(tmp_path / "dist", "0.2.0")
    assert main(["release", "add", str(new), str(tar)]) == 0
    assert "added 0.2.0: busfleet-0.2.0.tar" in capsys.readouterr().out
    assert main(["release", "list", str(new)]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("0.2.0\tbusfleet-0.2.0.tar\t") and "# timestamp expires" in listed
    assert main(["release", "timestamp", str(new), "--hours", "2"]) == 0
    assert "valid for 2 h" in capsys.readouterr().out
    for argv, why in (
        (["release", "add", str(new), str(tar)], "0.2.0 is in the repository already"),
        (["release", "init", str(new)], "already holds a repository"),
        (["release", "list", str(tmp_path / "nothing")], "is no release repository"),
        (["release", "timestamp", str(new), "--hours", "-1"], "--hours must be"),
        (["release", "build", "--version", "two", "--out", str(tmp_path)], "not a release"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert why in err and len(err.splitlines()) == 1, err


# -- served over HTTP --


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def central_http(tmp_path: Path, release_repo: str) -> AsyncIterator[tuple[str, int]]:
    """central's own HTTP server (run_http), as `busfleet central serve` runs it."""
    config = dataclasses.replace(
        CentralConfig(),
        db=str(tmp_path / "central.sqlite"),
        media_dir=str(tmp_path / "media"),
        http_port=free_port(),
        release_repo=release_repo,
    )
    store = open_store(config.db)
    task = asyncio.create_task(run_http(config, store))
    try:
        for _ in range(500):
            with contextlib.suppress(OSError):
                _r, w = await asyncio.open_connection("127.0.0.1", config.http_port)
                w.close()
                break
            await asyncio.sleep(0.01)
        yield "127.0.0.1", config.http_port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()


async def raw_get(host: str, port: int, target: str) -> tuple[int, bytes]:
    """A GET with the request target exactly as given (no client normalises `..` away)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


HOSTILE = [
    "/releases/metadata/../keys/timestamp.pem",
    "/releases/metadata/..%2Fkeys%2Ftimestamp.pem",
    "/releases/metadata/%2e%2e%2fkeys%2ftimestamp.pem",
    "/releases/metadata/%2E%2E/keys/timestamp.pem",
    "/releases/targets/../../outside.txt",
    "/releases/targets/..%2F..%2Foutside.txt",
    "/releases/targets/..%5C..%5Coutside.txt",
    "/releases/metadata//etc/passwd",
    "/releases/metadata/%2Fetc%2Fpasswd",
    "/releases/keys/timestamp.pem",
    "/releases/metadata/.lock",
    "/releases/metadata/.hidden.json",
    "/releases/metadata/linked.json",
    "/releases/metadata/..",
    "/releases/metadata/",
    "/releases/metadata/timestamp.json%00",
    "/releases/../repo/keys/timestamp.pem",
]


async def test_hostile_names_never_reach_a_file_outside_the_repository(
    repo: Path, tmp_path: Path
) -> None:
    secret = (repo / "keys" / "timestamp.pem").read_bytes()
    (tmp_path / "outside.txt").write_text("outside")
    (repo / "metadata" / ".hidden.json").write_text("{}")
    (repo / "metadata" / "linked.json").symlink_to(repo / "keys" / "timestamp.pem")
    async with central_http(tmp_path, str(repo)) as (host, port):
        status, body = await raw_get(host, port, "/releases/metadata/timestamp.json")
        assert status == 200 and body == (repo / "metadata" / "timestamp.json").read_bytes()
        for target in HOSTILE:
            status, body = await raw_get(host, port, target)
            assert status in (400, 404), (target, status)
            assert b"PRIVATE KEY" not in body and b"outside" not in body, target
    assert secret == (repo / "keys" / "timestamp.pem").read_bytes()


async def test_targets_are_streamed_and_nothing_is_served_without_a_repository(
    repo: Path, tmp_path: Path
) -> None:
    release = repository.add(repo, release_tar(tmp_path / "dist", "0.2.0"))
    name = f"{release.sha256}.{release.target}"
    async with repo_server(repo) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/targets/{name}", headers={"Range": "bytes=100-"}) as r:
            assert r.status == 206  # a bus resumes a cut download
            assert await r.read() == (repo / "targets" / name).read_bytes()[100:]
        async with http.get(f"{url}/metadata/timestamp.json") as r:
            assert r.headers["Cache-Control"] == "no-cache"
    async with central_http(tmp_path, "") as (host, port):
        status, _ = await raw_get(host, port, "/releases/metadata/timestamp.json")
        assert status == 404
