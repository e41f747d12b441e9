"""Files for imports are uploaded, never named by path: staged per dispatcher, in order, within
caps, checked by size and sha256, and gone once used or expired."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from busfleet.broker.launch import Broker
from busfleet.cli import main
from central import client
from central.config import CentralConfig
from central.operator_files import NotAFile
from central.service.alarm_center import AlarmCenter
from central.service.dispatch import Dispatch
from central.store.db import CentralStore
from central.uploads import UploadRefused, Uploads
from protocols.requests import (
    UPLOAD_CHUNK_BYTES,
    DispatchReply,
    ImportGtfs,
    ImportMedia,
    Request,
    Upload,
    UploadedFile,
)
from tests.ads_helpers import png
from tests.fleet_helpers import central_config, central_running
from tests.test_dispatch import ask
from tests.test_gtfs_import import FEED


@pytest.fixture
def dispatch(tmp_path: Path) -> Dispatch:
    config = dataclasses.replace(
        CentralConfig(), db=str(tmp_path / "central.sqlite"), media_dir=str(tmp_path / "media")
    )
    store = CentralStore(config.db)
    return Dispatch(store, config, AlarmCenter(store))


def asker(d: Dispatch, user: str = "alice") -> client.Asker:
    async def send(request: Request) -> DispatchReply:
        return (await ask(d, request, user))[0]

    return send


def feed_zip(path: Path, padding: int = 0) -> Path:
    """The small feed zipped; `padding` stored bytes make it span several pieces."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in FEED.items():
            zf.writestr(name, text)
        zf.writestr("padding.bin", os.urandom(padding))
    return path


def staged(d: Dispatch) -> list[Path]:
    return sorted(p for p in d.uploads.root.rglob("*") if p.is_file() and p.name != ".lock")


async def test_an_uploaded_feed_is_imported_by_its_sender_only_and_once(
    dispatch: Dispatch, tmp_path: Path
) -> None:
    archive = feed_zip(tmp_path / "feed.zip", padding=3 * UPLOAD_CHUNK_BYTES)
    seen: list[tuple[int, int]] = []
    upload = await client.upload(
        asker(dispatch), archive, progress=lambda done, total: seen.append((done, total))
    )
    size = archive.stat().st_size
    assert len(seen) == 4 and seen[-1] == (size, size)  # in pieces, the last one completes it
    # Another dispatcher cannot name it.
    reply, _ = await ask(dispatch, ImportGtfs(upload=upload), user="bob")
    assert not reply.ok and f"no finished upload {upload} of yours" in reply.error
    reply, _ = await ask(dispatch, ImportGtfs(upload=upload, name="feed.zip"))
    assert reply.ok, reply.error
    assert reply.result["stop_times"] == 8 and reply.result["encoding"] == "utf-8"
    assert staged(dispatch) == []  # used: gone
    again, _ = await ask(dispatch, ImportGtfs(upload=upload))
    assert not again.ok and "no finished upload" in again.error


async def test_pieces_out_of_order_too_many_or_damaged_are_refused(dispatch: Dispatch) -> None:
    data = b"x" * 100
    sha = hashlib.sha256(data).hexdigest()
    up = "a" * 32

    async def piece(offset: int, chunk: bytes, digest: str | None = None) -> DispatchReply:
        request = Upload(id=up, offset=offset, total=100, data=chunk, sha256=digest)
        return (await ask(dispatch, request))[0]

    reply = await piece(10, data[:10])
    assert not reply.ok and "no upload" in reply.error and "in progress" in reply.error
    assert (await piece(0, data[:40])).ok
    reply = await piece(50, data[50:])
    assert not reply.ok and "expected offset 40, not 50" in reply.error
    reply = await piece(40, data[40:] + b"more")
    assert not reply.ok and "more than the 100 bytes announced" in reply.error
    reply = await piece(40, data[40:], hashlib.sha256(b"other").hexdigest())
    assert not reply.ok and "sha256 differs" in reply.error
    reply, _ = await ask(dispatch, ImportGtfs(upload=up))
    assert not reply.ok and "no finished upload" in reply.error
    # Begun again from the start, it completes.
    assert (await piece(0, data[:40])).ok
    done = await piece(40, data[40:], sha)
    assert done.ok and done.result == {"upload": up, "received": 100, "complete": True}


async def test_uploads_are_capped_per_file_and_all_together(
    dispatch: Dispatch, tmp_path: Path
) -> None:
    dispatch.uploads = Uploads(dispatch.uploads.root, max_bytes=1000, max_total=1500)
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * 1001)
    with pytest.raises(client.UploadFailed, match="over central's cap of 1000 bytes"):
        await client.upload(asker(dispatch), big)
    assert staged(dispatch) == []
    ok = tmp_path / "ok.bin"
    ok.write_bytes(b"o" * 900)
    await client.upload(asker(dispatch), ok)
    with pytest.raises(client.UploadFailed, match="upload space is full"):
        await client.upload(asker(dispatch, "bob"), ok)


async def test_an_upload_left_unused_expires(dispatch: Dispatch, tmp_path: Path) -> None:
    media = tmp_path / "a.png"
    media.write_bytes(png(2, 2, (0, 0, 0)))
    upload = await client.upload(asker(dispatch), media)
    hour_ago = time.time() - 3700
    for path in staged(dispatch):
        os.utime(path, (hour_ago, hour_ago))
    assert dispatch.uploads.sweep() == 2 and staged(dispatch) == []
    reply, _ = await ask(dispatch, ImportMedia(files=[UploadedFile(upload=upload, name="a.png")]))
    assert reply.ok and reply.result == {"imported": 0, "rejected": 1}
    assert "no finished upload" in str(reply.tables["rejected"][0]["error"])


async def test_the_uploader_refuses_devices_and_fifos_without_reading_them(
    dispatch: Dispatch, tmp_path: Path
) -> None:
    fifo = tmp_path / "feed.fifo"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came: forever
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(NotAFile, match="not a regular file"):
            await asyncio.wait_for(client.upload(asker(dispatch), path), 10)
    too_big = tmp_path / "big.png"
    too_big.write_bytes(b"\0" * 2000)
    with pytest.raises(NotAFile, match="larger than 1000 bytes"):
        await client.upload(asker(dispatch), too_big, limit=1000)
    assert staged(dispatch) == []


def test_media_import_of_dev_zero_is_refused_and_the_other_files_go_in(
    mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.png").write_bytes(png(3, 3, (1, 2, 3)))
    db = tmp_path / "c.sqlite"
    conn = ["--db", str(db), "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)]
    config = central_config(mosquitto, db, media_dir=str(tmp_path / "m"))
    with central_running(config):
        code = main(["central", "media", "import", *conn, "/dev/zero", str(tmp_path / "a.png")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "/dev/zero: /dev/zero is not a regular file" in err
    assert json.loads(out)["name"] == "a.png"


def test_import_gtfs_uploads_a_folder_with_progress_and_forced_encoding(
    mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "feed"
    folder.mkdir()
    for name, text in FEED.items():
        (folder / name).write_text(text)
    stops = FEED["stops.txt"].replace("Stop A", "Caf\u00e9")
    (folder / "stops.txt").write_bytes(stops.encode("cp1252"))
    (folder / "notes.txt").write_bytes(os.urandom(6_000_000))  # not GTFS: makes it big
    db = tmp_path / "c.sqlite"
    conn = ["--db", str(db), "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)]
    with central_running(central_config(mosquitto, db)):
        code = main(["central", "import-gtfs", *conn, str(folder), "--encoding", "cp1252"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["ok"] and summary["stop_times"] == 8 and summary["encoding"] == "cp1252"
    assert "uploading feed: 100% of 6.0 MB" in err
    assert "not UTF-8" not in err


async def test_a_malformed_feed_sent_to_central_is_refused_not_a_failure(
    dispatch: Dispatch, tmp_path: Path
) -> None:
    extra = ",".join(f"x{i}" for i in range(2100))
    stop_times = f"trip_id,arrival_time,departure_time,stop_id,stop_sequence,{extra}\n" + (
        "T1,07:00:00,07:00:00,A,1\nT2,08:00:00,08:00:00,D,1\nT1,07:30:00,07:31:00,D,2\n"
    )
    archive = tmp_path / "wide.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in {**FEED, "stop_times.txt": stop_times}.items():
            zf.writestr(name, text)
    upload = await client.upload(asker(dispatch), archive)
    reply, _ = await ask(dispatch, ImportGtfs(upload=upload))
    assert (reply.ok, reply.failed) == (False, False)
    assert "stop_times.txt line 1: 2105 columns, at most 500" in reply.error
    assert dispatch.counters["failed"] == 0


def test_a_damaged_upload_frees_its_space_and_one_dispatcher_cannot_fill_it_for_all(
    tmp_path: Path,
) -> None:
    uploads = Uploads(tmp_path / "up", max_bytes=100, max_total=300, max_per_user=150)
    wrong = Upload(id="a" * 32, offset=0, total=100, data=b"x" * 100, sha256="0" * 64)
    with pytest.raises(UploadRefused, match="sha256"):
        uploads.receive("alice", wrong)
    # Its announced size counted against everyone's space until the sweep an hour later.
    assert uploads._staged() == 0
    good = hashlib.sha256(b"y" * 100).hexdigest()
    for n in "bc":
        uploads.receive("alice", Upload(id=n * 32, offset=0, total=50, data=b"", sha256=None))
    with pytest.raises(UploadRefused, match="your uploads"):
        uploads.receive("alice", Upload(id="d" * 32, offset=0, total=100, data=b""))
    done = uploads.receive(
        "bob", Upload(id="e" * 32, offset=0, total=100, data=b"y" * 100, sha256=good)
    )
    assert done["complete"] is True
