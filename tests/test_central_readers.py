"""The read-only tools (`central commands`, `messages`, `driver-log`, `divert list`, `media list`,
`playlist list|show`, `report plays`) ask the running central, which alone opens its database;
long answers come in pages."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from busfleet.broker.launch import Broker
from busfleet.cli import main
from central import client
from central.media import MediaLibrary
from central.service import dispatch
from central.store import queries as query_db
from central.store.db import CentralStore
from central.store.pg_store import open_store
from protocols import codec
from tests.ads_helpers import png
from tests.fleet_helpers import central_config, central_running, cli_conn

ROOT = Path(__file__).resolve().parent.parent


def test_a_listing_through_the_service_prints_what_the_database_holds_in_pages(
    mosquitto: Broker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "central.sqlite"
    store = CentralStore(db)
    later = time.time() + 3600  # central expires unanswered commands: these are not yet
    try:
        for n in range(60):
            args = codec.encode_json({"text": f"Durchsage {n}"})
            store.add_command(f"c{n:03d}", "bus-01", "announce", args, 1000.0 + n, later)
        store.add_command("c-other", "bus-02", "restart", "{}", 999.0, later)
        held = store.commands("bus-01")
        media = MediaLibrary(store, tmp_path / "media").import_bytes(png(2, 2, (9, 9, 9)), "a.png")
    finally:
        store.close()
    # A page of a few records: sixty commands take several requests, and all of them come.
    monkeypatch.setattr(dispatch, "PAGE_BYTES", 1500)
    asked: list[object] = []
    real_envelope = client.envelope
    monkeypatch.setattr(client, "envelope", lambda r, *a: asked.append(r) or real_envelope(r, *a))
    conn = cli_conn(mosquitto, db)
    with central_running(central_config(mosquitto, db, media_dir=str(tmp_path / "media"))):
        assert main(["central", "commands", "--bus", "bus-01", *conn]) == 0
        printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(asked) > 3
        assert main(["central", "media", "list", *conn]) == 0
        [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert main(["central", "playlist", "show", "nothing", *conn]) == 2
        err = capsys.readouterr().err
    assert printed == held and [r["id"] for r in printed] == [f"c{n:03d}" for n in range(60)]
    assert (listed["sha256"], listed["name"], listed["size"]) == (media.sha256, "a.png", media.size)
    [line] = err.strip().splitlines()
    assert line == "busfleet central playlist show: no playlist 'nothing'"


def test_another_thread_gets_its_own_connection_to_the_same_database(central_db: str) -> None:
    store = open_store(central_db)
    try:
        record = ("bus-01", 7, 1.0, *[None] * 14, 0, 2.0)
        assert store.add_records([record]) == 1
        with store.for_thread() as other:
            assert other is not store and other.db.conn is not store.db.conn
            assert other.seqs("bus-01") == [7]
            assert query_db.latest_vehicle(other, "bus-01") == query_db.latest_vehicle(
                store, "bus-01"
            )
    finally:
        store.close()


def test_an_in_memory_database_has_no_second_connection() -> None:
    memory = CentralStore(":memory:")
    try:
        assert not memory.shareable
        with pytest.raises(ValueError, match="in-memory"), memory.for_thread():
            pass
    finally:
        memory.close()


def test_only_a_process_that_starts_opens_central_s_database() -> None:
    """The service opens it and hands it to its parts; import-gtfs fills a new one while no
    central runs, and `central retention` purges while none runs (its --dry-run only reads).
    Nothing else in central/ or busfleet/ opens it."""
    allowed = {
        "central/service/service.py",
        "busfleet/commands/dispatch.py",
        "busfleet/commands/retention.py",
        # `central report trips|mileage|...` reads the history itself (reads only, as
        # retention --dry-run; a month's report is no request for the running service).
        "busfleet/commands/operator_reports.py",
    }
    opened = set()
    for package in ("central", "busfleet"):
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("central/store/"):
                continue
            if re.search(r"\b(?:CentralStore|open_store)\(", path.read_text()):
                opened.add(rel)
    assert opened == allowed
