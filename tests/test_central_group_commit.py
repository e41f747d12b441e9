"""Central's group commit: many messages, one transaction, receipts only after the commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import pytest

from central.service.ingest import Ingest
from central.service.service import Inbox
from central.store.pg_store import open_store
from protocols import codec, topics
from protocols.ranges import expand
from protocols.schemas import Event, EventBatch, Position, TelemetryBatch, TelemetryRecord


def batch(bus: str, seqs: range) -> bytes:
    records = [
        TelemetryRecord(seq=s, t=1000.0 + s, pos=Position(lat=-16.9, lon=145.7)) for s in seqs
    ]
    return codec.encode(TelemetryBatch(bus=bus, records=records))


@pytest.fixture
def ingest(central_db: str) -> Ingest:
    """The tests taking it run on both backends (SQLite and PostgreSQL)."""
    return Ingest(open_store(central_db))


def test_a_group_of_messages_is_stored_and_receipted_per_bus(ingest: Ingest) -> None:
    messages = [
        (topics.telemetry("b1"), batch("b1", range(1, 4))),
        (topics.telemetry("b2"), batch("b2", range(1, 3))),
        (topics.telemetry("b1"), batch("b1", range(4, 6))),
        (topics.telemetry("b1"), b"garbage"),
    ]
    ingest.handle_many(messages, now=2000)
    assert ingest.store.seqs("b1") == [1, 2, 3, 4, 5]
    assert ingest.store.seqs("b2") == [1, 2]
    receipts = {r.bus: expand(r.ranges) for r in ingest.take_receipts()}
    assert receipts == {"b1": [1, 2, 3, 4, 5], "b2": [1, 2]}
    assert ingest.counters["rejected"] == 1
    assert ingest.buses["b1"].entry.records == 5


def test_a_failed_commit_stores_nothing_and_sends_no_receipt(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest.handle(topics.telemetry("b1"), batch("b1", range(1, 3)), now=1000)
    ingest.take_receipts()
    real = ingest.store.add_records
    calls = []

    def failing(rows: Any) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real(rows)

    monkeypatch.setattr(ingest.store, "add_records", failing)
    messages = [
        (topics.telemetry("b1"), batch("b1", range(3, 5))),
        (topics.telemetry("b2"), batch("b2", range(1, 3))),
    ]
    with pytest.raises(sqlite3.OperationalError):
        ingest.handle_many(messages, now=2000)
    assert ingest.store.seqs("b1") == [1, 2], "the first message of the batch was rolled back"
    assert ingest.take_receipts() == []


async def test_a_full_inbox_holds_the_network_thread_back_and_loses_nothing() -> None:
    inbox = Inbox(asyncio.get_running_loop(), limit=3)
    sent = [(f"t/{i}", bytes([i])) for i in range(20)]
    done = threading.Event()

    def network_thread() -> None:
        for topic, payload in sent:
            inbox.put(topic, payload)
        done.set()

    thread = threading.Thread(target=network_thread)
    thread.start()
    got: list[tuple[str, bytes]] = []
    while len(got) < len(sent):
        taken = await inbox.take(limit=2)
        assert 1 <= len(taken) <= 2
        got += taken
    thread.join(5)
    assert done.is_set()
    assert got == sent


def test_a_bus_sending_faster_than_the_hold_gets_one_receipt_for_all_of_it(
    ingest: Ingest,
) -> None:
    """A draining backlog is receipted once per hold interval per bus, not once a message;
    nothing waits for a bus at 1 Hz, and nothing held is forgotten."""
    ingest.handle_many([(topics.telemetry("b1"), batch("b1", range(1, 3)))], now=2000)
    first = ingest.take_receipts(now=100.0, hold_s=0.25)
    assert [(r.bus, expand(r.ranges)) for r in first] == [("b1", [1, 2])]
    ingest.handle_many(
        [
            (topics.telemetry("b1"), batch("b1", range(3, 5))),
            (topics.telemetry("b2"), batch("b2", range(1, 2))),
        ],
        now=2000,
    )
    soon = ingest.take_receipts(now=100.1, hold_s=0.25)
    assert [(r.bus, expand(r.ranges)) for r in soon] == [("b2", [1])]  # b1 is held
    assert ingest.receipts_due_in(100.1, 0.25) == pytest.approx(0.15)
    ingest.handle_many([(topics.telemetry("b1"), batch("b1", range(5, 7)))], now=2000)
    assert ingest.take_receipts(now=100.2, hold_s=0.25) == []
    later = ingest.take_receipts(now=100.35, hold_s=0.25)
    assert [(r.bus, expand(r.ranges)) for r in later] == [("b1", [3, 4, 5, 6])]
    assert ingest.receipts_due_in(100.35, 0.25) is None  # nothing left waiting
    assert ingest.store.seqs("b1") == [1, 2, 3, 4, 5, 6]


async def test_an_inbox_take_cancelled_by_a_timeout_loses_nothing() -> None:
    inbox = Inbox(asyncio.get_running_loop())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await inbox.take()
    inbox.put("t", b"x")
    await asyncio.sleep(0)  # put's wake-up (call_soon_threadsafe) runs first
    async with asyncio.timeout(0):  # ready now: nothing to wait for, nothing to time out
        assert await inbox.take() == [("t", b"x")]


def test_a_text_with_a_nul_in_it_is_stored_and_its_batch_with_it(ingest: Ingest) -> None:
    """PostgreSQL's text cannot hold NUL: such an event is stored there with U+FFFD (SQLite
    keeps it), and the other messages of its batch are stored and receipted on both."""
    nul = EventBatch(bus="b2", events=[Event(seq=1, t=1000.0, kind="x\x00y", data={"r": "a\x00"})])
    ingest.handle_many(
        [
            (topics.telemetry("b1"), batch("b1", range(1, 3))),
            (topics.events("b2"), codec.encode(nul)),
        ],
        now=2000,
    )
    receipts = {r.bus: expand(r.ranges) for r in ingest.take_receipts()}
    assert receipts == {"b1": [1, 2], "b2": [1]}
    [(kind,)] = ingest.store.db.execute("SELECT kind FROM events WHERE bus = 'b2'").fetchall()
    assert kind in ("x\x00y", "x\ufffdy")
    assert kind == ("x\x00y" if ingest.store.backend == "sqlite" else "x\ufffdy")
