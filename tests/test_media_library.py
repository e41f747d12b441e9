"""The media library at central: content-addressed, checked by its bytes, served with Range;
playlists built against it; and the plays report for advertisers."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from busfleet.broker.launch import Broker, free_port
from busfleet.cli import main
from central.config import CentralConfig
from central.http.media import media_routes
from central.http.server import run_http
from central.media import MediaLibrary, MediaRejected, media_path
from central.playlists import (
    PlaylistError,
    build_playlist,
    desired_with_playlist,
    get_playlist,
    save_playlist,
)
from central.reports import plays_report
from central.service.ingest import Ingest
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.schemas import Assignment, DesiredState, Event, EventBatch
from tests.ads_helpers import png
from tests.fleet_helpers import central_config, central_running, cli_conn

CLEAN_SVG = b"""<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10"
 height="10"><defs><linearGradient id="g"><stop offset="0" stop-color="#fc0"/></linearGradient>
 </defs><rect id="r" width="10" height="10" fill="url(#g)" style="stroke: url( '#g')"/>
 <use xlink:href="#r"/></svg>"""


def svg(body: str, attrs: str = "", prolog: str = "") -> bytes:
    root = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
    return f"{prolog}{root} {attrs}>{body}</svg>".encode()


BAD_SVGS = {
    "script": svg("<script>alert(1)</script>"),
    "handler": svg("<rect/>", 'onload="alert(1)"'),
    "external image": svg('<image href="http://x.test/a.png"/>'),
    "xlink to a file": svg('<use xlink:href="other.svg#a"/>'),
    "javascript link": svg('<a href="javascript:alert(1)"><rect/></a>'),
    "foreign object": svg('<foreignObject><div xmlns="http://www.w3.org/1999/xhtml">x</div>'
                          "</foreignObject>"),
    "entities": svg("&a;", prolog='<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]>'),
    "css import": svg('<style>@import "http://x.test/a.css";</style>'),
    "css url": svg('<rect style="fill: url(http://x.test/p)"/>'),
    "animated link": svg('<a><set attributeName="href" to="javascript:alert(1)"/></a>'),
}  # fmt: skip
HTML = b"<!DOCTYPE html><html><body><h1>Sale</h1><script>1</script></body></html>"


@pytest.fixture
def store(tmp_path: Path) -> CentralStore:
    return CentralStore(tmp_path / "central.sqlite")


@pytest.fixture
def library(store: CentralStore, tmp_path: Path) -> MediaLibrary:
    return MediaLibrary(store, tmp_path / "media")


def test_a_file_is_stored_once_under_the_hash_of_its_bytes(
    library: MediaLibrary, tmp_path: Path
) -> None:
    data = png(8, 8, (255, 0, 0))
    (tmp_path / "a.png").write_bytes(data)
    (tmp_path / "copy.bin").write_bytes(data)
    first = library.import_file(tmp_path / "a.png")
    second = library.import_file(tmp_path / "copy.bin")
    assert first == second
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert (first.mime, first.kind, first.size, first.name) == ("image/png", "image", len(data),
                                                                "a.png")  # fmt: skip
    stored = media_path(library.root, first.sha256)
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == first.sha256
    assert [f for f in library.root.rglob("*") if f.is_file()] == [stored]
    assert library.list() == [first]


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (png(2, 2, (0, 0, 0)), "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32, "image/jpeg"),
        (b"GIF89a" + b"\x00" * 32, "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 32, "image/webp"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 32, "video/mp4"),
        (b"\x1a\x45\xdf\xa3" + b"\x00" * 32, "video/webm"),
        (HTML, "text/html"),
        (CLEAN_SVG, "image/svg+xml"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_type_comes_from_the_bytes_not_the_name(
    library: MediaLibrary, data: bytes, mime: str
) -> None:
    assert library.import_bytes(data, "whatever.txt").mime == mime


def _wav(frames: int = 8000, *, rate: int = 16_000, channels: int = 1) -> bytes:
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x10" * frames * channels)
    return out.getvalue()


def test_a_recorded_announcement_enters_as_audio_and_a_lying_wav_does_not(
    library: MediaLibrary,
) -> None:
    """Recorded stop announcements (issue 17) are WAV files in the media library; a file that
    only starts like one (a RIFF/WAVE header over garbage or over fewer frames than it says,
    a format no bus plays) is refused with the reason."""
    info = library.import_bytes(_wav(), "next_stop-S1-de.wav")
    assert (info.mime, info.kind) == ("audio/wav", "audio")
    good = _wav()
    bad = {
        "garbage": b"RIFF\x24\x00\x00\x00WAVE" + b"\x00" * 64,
        "shorter than its header": good[:-1000],
        "96 kHz": _wav(rate=96_000),
        "six channels": _wav(channels=6),
        "no sound": _wav(0),
    }
    for case, data in bad.items():
        with pytest.raises(MediaRejected) as refused:
            library.import_bytes(data, f"{case}.wav")
        assert refused.value.reason == "wav", case
    assert [m.name for m in library.list()] == ["next_stop-S1-de.wav"]


def test_an_svg_as_editors_write_it_is_accepted(library: MediaLibrary) -> None:
    doctype = (b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
               b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n')  # fmt: skip
    data = CLEAN_SVG.replace(b"<svg ", doctype + b"<svg ", 1)
    assert library.import_bytes(data, "logo.svg").mime == "image/svg+xml"


def test_a_file_of_no_accepted_type_is_refused(library: MediaLibrary) -> None:
    for data in (b"#!/bin/sh\nrm -rf /\n", b"%PDF-1.7\n", b"MZ\x90\x00", b""):
        with pytest.raises(MediaRejected) as info:
            library.import_bytes(data, "x.png")
        assert info.value.reason in ("type", "empty")
    assert library.list() == []


@pytest.mark.parametrize("case", sorted(BAD_SVGS))
def test_an_svg_that_could_run_code_or_load_anything_is_refused(
    library: MediaLibrary, case: str
) -> None:
    with pytest.raises(MediaRejected) as info:
        library.import_bytes(BAD_SVGS[case], f"{case}.svg")
    assert info.value.reason == "svg"
    assert library.list() == [] and not any(library.root.rglob("*"))


def test_an_oversized_file_is_refused_and_leaves_nothing(
    store: CentralStore, tmp_path: Path
) -> None:
    library = MediaLibrary(store, tmp_path / "media", caps={"image": 1000, "video": 10,
                                                            "html": 10})  # fmt: skip
    assert library.import_bytes(png(4, 4, (1, 2, 3)), "small.png").size < 1000
    big = tmp_path / "big.png"
    big.write_bytes(png(64, 64, (1, 2, 3)) + b"\x00" * 2000)
    with pytest.raises(MediaRejected) as info:
        library.import_file(big)
    assert info.value.reason == "size"
    assert [m.name for m in library.list()] == ["small.png"]


@pytest.fixture
async def media_server(library: MediaLibrary) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(media_routes(library.root))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/media"
    await runner.cleanup()


async def test_media_are_served_whole_or_from_an_offset(
    library: MediaLibrary, media_server: str
) -> None:
    data = png(40, 40, (0, 128, 255))
    info = library.import_bytes(data, "blue.png")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{media_server}/{info.sha256}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/png"
            assert await resp.read() == data
        async with http.get(f"{media_server}/{info.sha256}.png", headers={"Range": "bytes=100-"}) \
                as resp:  # fmt: skip
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
            assert await resp.read() == data[100:]
        for missing in ("0" * 64, "..%2F..%2Fcentral.sqlite", info.sha256[:63]):
            async with http.get(f"{media_server}/{missing}") as resp:
                assert resp.status == 404


async def test_html_and_svg_are_served_in_a_csp_sandbox(
    library: MediaLibrary, media_server: str
) -> None:
    page = library.import_bytes(HTML, "sale.html")
    svg = library.import_bytes(CLEAN_SVG, "logo.svg")
    image = library.import_bytes(png(2, 2, (9, 9, 9)), "dot.png")
    async with aiohttp.ClientSession() as http:
        for info in (page, svg):
            async with http.get(f"{media_server}/{info.sha256}") as resp:
                csp = resp.headers["Content-Security-Policy"]
                assert csp.startswith("sandbox") and "default-src 'none'" in csp
                assert "allow-same-origin" not in csp
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(f"{media_server}/{image.sha256}") as resp:
            assert "Content-Security-Policy" not in resp.headers


def test_a_playlist_takes_type_and_size_from_the_library_and_grows_its_revision(
    library: MediaLibrary, store: CentralStore
) -> None:
    red = library.import_bytes(png(4, 4, (255, 0, 0)), "red.png")
    page = library.import_bytes(HTML, "sale.html")
    source = {
        "id": "summer",
        "timezone": "Australia/Brisbane",
        "items": [
            {"id": "red", "media": "red.png", "duration_s": 8, "mime": "text/plain"},
            {"id": "sale", "media": page.sha256[:10], "duration_s": 15},
        ],
        "schedules": [{"id": "all", "items": ["red", "sale"], "end": dt.date(2025, 12, 31)}],
    }
    built = build_playlist(library, source, "http://central.test/media")
    assert [(i.media, i.mime, i.size) for i in built.items] == [
        (red.sha256, "image/png", red.size), (page.sha256, "text/html", page.size)
    ]  # fmt: skip
    assert built.media_url_of(red.sha256) == f"http://central.test/media/{red.sha256}"
    first = save_playlist(store, built)
    assert save_playlist(store, built).revision == first.revision == 1
    source["items"][0]["duration_s"] = 12  # type: ignore[index]
    second = save_playlist(store, build_playlist(library, source))
    assert second.revision == 2 and get_playlist(store, "summer") == second
    with pytest.raises(PlaylistError, match="no single media"):
        build_playlist(library, {**source, "items": [{"id": "x", "media": "nope.png",
                                                      "duration_s": 5}]})  # fmt: skip
    with pytest.raises(PlaylistError, match="unknown item"):
        build_playlist(library, {**source, "schedules": [{"id": "s", "items": ["ghost"]}]})


def test_assigning_a_playlist_keeps_the_rest_of_the_desired_state(
    library: MediaLibrary, store: CentralStore
) -> None:
    red = library.import_bytes(png(4, 4, (255, 0, 0)), "red.png")
    pl = save_playlist(store, build_playlist(library, {
        "id": "p", "items": [{"id": "red", "media": red.sha256, "duration_s": 5}],
        "schedules": [{"id": "s", "items": ["red"]}],
    }))  # fmt: skip
    store.put_desired(
        "bus-3",
        lambda v: codec.encode(DesiredState(bus="bus-3", version=v,
                                            assignment=Assignment(route_id="R1"))),
    )  # fmt: skip
    version, payload = desired_with_playlist(store, "bus-3", pl)
    desired = codec.decode(DesiredState, payload)
    assert (version, desired.version, desired.playlist) == (2, 2, "p")
    assert desired.ads == pl and desired.assignment == Assignment(route_id="R1")
    _, payload = desired_with_playlist(store, "bus-3", None)
    off = codec.decode(DesiredState, payload)
    assert off.ads is None and off.playlist is None and off.assignment is not None


def play_event(seq: int, item: str, start: float, seconds: float, route: str) -> Event:
    data = {"item": item, "start": start, "end": start + seconds, "route": route, "bus": "x"}
    return Event(seq=seq, t=start, kind="play", data=data)  # type: ignore[arg-type]


def test_the_plays_report_counts_per_item_local_day_route_and_bus(
    tmp_path: Path, store: CentralStore, capsys: pytest.CaptureFixture[str], mosquitto: Broker
) -> None:
    tz = ZoneInfo("Australia/Brisbane")
    day1 = dt.datetime(2025, 6, 1, tzinfo=tz).timestamp()
    day2 = day1 + 86400
    ingest = Ingest(store)
    plan = {  # bus -> plays (item, start, seconds, route)
        "bus-1": [("red", day1 + 60, 10, "R1"), ("red", day1 + 3600, 10, "R1"),
                  ("sale", day1 + 7200, 15, "R2"), ("red", day2 - 1, 10, "R1"),
                  ("red", day2 + 5, 10, "R1")],
        "bus-2": [("red", day1 + 100, 10, "R1"), ("sale", day2 + 100, 15, "R2")],
    }  # fmt: skip
    for bus, plays in plan.items():
        events = [play_event(n + 1, *p) for n, p in enumerate(plays)]
        batch = codec.encode(EventBatch(bus=bus, events=events))
        ingest.handle(topics.events(bus), batch)
        ingest.handle(topics.events(bus), batch)  # a resend after a lost receipt
    store.close()
    db = tmp_path / "central.sqlite"
    args = ["central", "report", "plays", *cli_conn(mosquitto, db),
            "--from", "2025-06-01", "--to", "2025-06-02", "--tz", "Australia/Brisbane"]  # fmt: skip
    with central_running(central_config(mosquitto, db)):  # the tool asks it
        assert main([*args, "--format", "csv"]) == 0
        out = capsys.readouterr().out
        assert main([*args, "--format", "json", "--item", "sale"]) == 0
        json_out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out)))
    got = {(r["day"], r["item"], r["route"], r["bus"]): (int(r["plays"]), float(r["seconds"]))
           for r in rows}  # fmt: skip
    want: dict[tuple[str, str, str, str], tuple[int, float]] = {}
    for bus, plays in plan.items():
        for item, start, seconds, route in plays:
            day = dt.datetime.fromtimestamp(start, tz).date().isoformat()
            n, s = want.get((day, item, route, bus), (0, 0.0))
            want[(day, item, route, bus)] = (n + 1, s + seconds)
    assert got == want
    lines = [json.loads(line) for line in json_out.splitlines()]
    assert {(r["day"], r["bus"]) for r in lines} == {("2025-06-01", "bus-1"),
                                                      ("2025-06-02", "bus-2")}  # fmt: skip


def test_the_cli_imports_media_and_playlists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mosquitto: Broker
) -> None:
    db = ["--db", str(tmp_path / "c.sqlite"), "--media-dir", str(tmp_path / "m")]
    db += ["--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)]
    (tmp_path / "a.png").write_bytes(png(3, 3, (1, 1, 1)))
    (tmp_path / "evil.svg").write_bytes(BAD_SVGS["script"])
    (tmp_path / "p.toml").write_text(
        'id = "spring"\ntimezone = "Europe/Berlin"\n'
        '[[items]]\nid = "a"\nmedia = "a.png"\nduration_s = 7\n'
        '[[schedules]]\nid = "mornings"\nitems = ["a"]\nstart = 2025-03-01\nend = 2025-05-31\n'
        'weekdays = [1, 2, 3, 4, 5]\nwindows = [{start = "06:00", end = "10:00"}]\n'
        "max_plays_per_hour = 12\n"
    )
    (tmp_path / "central.toml").write_text("[central]\nhttp_port = 8080\n")
    conf = ["--config", str(tmp_path / "central.toml")]
    # The tools ask the running central, which imports into its own library and database.
    config = central_config(
        mosquitto, tmp_path / "c.sqlite", media_dir=str(tmp_path / "m"), http_port=8080
    )
    with central_running(config):
        code = main(["central", "media", "import", *db, str(tmp_path / "a.png"),
                     str(tmp_path / "evil.svg")])  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 1 and "evil.svg" in err
        assert json.loads(out)["name"] == "a.png"
        assert main(["central", "playlist", "import", *db, *conf, str(tmp_path / "p.toml")]) == 0
        assert "spring revision 1" in capsys.readouterr().out
        conn = cli_conn(mosquitto, tmp_path / "c.sqlite")
        assert main(["central", "playlist", "show", *conn, "spring"]) == 0
        shown = json.loads(capsys.readouterr().out)
    assert shown["schedules"][0]["windows"] == [{"start": "06:00", "end": "10:00"}]
    # Without a media_url, the buses download from central's own HTTP server.
    assert shown["media_url"] == "http://127.0.0.1:8080/media"


async def test_central_serve_http_serves_the_library(
    library: MediaLibrary, store: CentralStore, tmp_path: Path
) -> None:
    info = library.import_bytes(png(3, 3, (7, 7, 7)), "dot.png")
    port = free_port()
    config = CentralConfig(db=str(tmp_path / "central.sqlite"), media_dir=str(library.root),
                           http_port=port)  # fmt: skip
    task = asyncio.create_task(run_http(config, store))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # until it listens
                try:
                    async with http.get(f"http://127.0.0.1:{port}/media/{info.sha256}") as resp:
                        assert resp.status == 200
                        assert (
                            await resp.read() == media_path(library.root, info.sha256).read_bytes()
                        )
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("central's HTTP server never answered")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_plays_that_arrive_after_a_report_count_in_the_next_one(store: CentralStore) -> None:
    ingest = Ingest(store)
    day = dt.date(2025, 6, 1)
    t = dt.datetime(2025, 6, 1, 9, tzinfo=dt.UTC).timestamp()

    def send(bus: str, seqs: range) -> None:
        events = [play_event(s, "red", t + s * 10, 10, "R1") for s in seqs]
        ingest.handle(topics.events(bus), codec.encode(EventBatch(bus=bus, events=events)))

    send("bus-1", range(1, 11))
    assert [r.plays for r in plays_report(store, day, day)] == [10]
    send("bus-1", range(5, 21))  # a backlog after an outage, overlapping what was stored
    send("bus-2", range(1, 4))
    assert {(r.bus, r.plays) for r in plays_report(store, day, day)} == {("bus-1", 20),
                                                                         ("bus-2", 3)}  # fmt: skip
