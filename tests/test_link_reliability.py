"""Nothing lost, nothing twice: the fleet link through broker, agent and central failures.

Real mosquitto, `busfleet central serve` and `busfleet agent` processes, real SQLite files.
Each test ends by checking that central holds every sequence number the bus wrote exactly
once (the (bus, seq) primary key makes a duplicate impossible to store twice, so "exactly
once" is: the stored set equals the written set, minus what the budget policy reported).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from busfleet.broker.launch import free_port
from onboard.link.outbox import Outbox
from onboard.link.upkeep import RANGES_CHARS, OutboxUpkeep
from onboard.recorder import EventRecorder
from protocols import codec
from protocols.ranges import expand, ranges
from protocols.schemas import Event
from tests.fleet_helpers import (
    Procs,
    broker_on,
    prefill,
    rows,
    stored_seqs,
    wait_all_stored,
    wait_for,
    written_seqs,
)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def procs(tmp_path: Path, port: int) -> Iterator[Procs]:
    p = Procs(tmp_path, port)
    yield p
    p.close()


def test_a_bus_offline_for_an_hour_sends_its_backlog_in_order_as_backfill(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    seqs = prefill(tmp_path / "bus-a", 3600, created=time.time() - 3600)
    with broker_on(tmp_path / "mq", port):
        procs.central()
        procs.agent("bus-a")
        wait_all_stored(tmp_path, "bus-a", seqs)
    db = tmp_path / "central.sqlite"
    assert rows(db, "SELECT COUNT(*) FROM telemetry WHERE backfill = 0") == [(0,)]
    order = [r[0] for r in rows(db, "SELECT t FROM telemetry WHERE bus = 'bus-a' ORDER BY seq")]
    assert order == sorted(order)


def test_the_broker_killed_and_restarted_mid_stream_loses_nothing(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    # A backlog large enough to be still streaming when the broker goes (see below).
    seqs = prefill(tmp_path / "bus-a", 50_000, created=time.time() - 50_000, spacing=0.1)
    with broker_on(tmp_path / "mq", port):
        procs.central()
        procs.agent("bus-a")
        wait_for(lambda: len(stored_seqs(tmp_path, "bus-a")) > 200, 60, "the stream to start")
    # The broker is gone (no persistence: its queues and retained messages with it).
    time.sleep(1.0)
    assert len(stored_seqs(tmp_path, "bus-a")) < len(seqs), "the stream ended before the outage"
    with broker_on(tmp_path / "mq", port):
        wait_all_stored(tmp_path, "bus-a", seqs)


def test_an_agent_killed_mid_batch_resumes_without_loss_or_duplicates(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    # A backlog large enough to be still streaming when the agent is killed (see below).
    seqs = prefill(tmp_path / "bus-a", 50_000, created=time.time() - 50_000, spacing=0.1)
    with broker_on(tmp_path / "mq", port):
        procs.central()
        first = procs.agent("bus-a", "agent-1")
        wait_for(lambda: len(stored_seqs(tmp_path, "bus-a")) > 100, 60, "the stream to start")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(stored_seqs(tmp_path, "bus-a")) < len(seqs)
        procs.agent("bus-a", "agent-2")
        wait_all_stored(tmp_path, "bus-a", seqs)


def test_central_killed_mid_ingest_gets_everything_after_its_restart(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    # Enough backlog that the stream is still running when something is killed: without Nagle
    # and with each record encoded once, 5,000 records were all stored before the first poll.
    seqs = prefill(tmp_path / "bus-a", 50_000, created=time.time() - 50_000, spacing=0.1)
    with broker_on(tmp_path / "mq", port):
        central = procs.central("central-1")
        procs.agent("bus-a")
        wait_for(lambda: len(stored_seqs(tmp_path, "bus-a")) > 100, 60, "the stream to start")
        central.send_signal(signal.SIGKILL)
        central.wait()
        assert len(stored_seqs(tmp_path, "bus-a")) < len(seqs)
        procs.central("central-2")
        wait_all_stored(tmp_path, "bus-a", seqs)


def test_an_outbox_over_its_budget_drops_only_what_it_reports(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    now = time.time()
    prefill(tmp_path / "bus-a", 4000, created=now - 8000, spacing=2.0)
    config_budget_mb = 0.2  # about 1,500 of these records
    with broker_on(tmp_path / "mq", port):
        procs.central()
        config = tmp_path / "bus-a.toml"
        procs.agent("bus-a")  # writes the config; restart it with the budget
        procs.procs[-1].kill()
        procs.procs[-1].wait()
        config.write_text(config.read_text() + f"[outbox]\nbudget_mb = {config_budget_mb}\n")
        procs.start("bus-a-budget", "agent", "--config", str(config))

        def dropped() -> list[int]:
            notes = rows(
                tmp_path / "central.sqlite",
                "SELECT data FROM events WHERE bus = 'bus-a' AND kind = 'dropped'",
            )
            found: list[int] = []
            for (data,) in notes:
                text = codec.decode_json(data)["ranges"]
                found += expand(tuple(map(int, r.split("-"))) for r in text.split(","))  # type: ignore[misc]
            return found

        wait_for(dropped, 60, "the dropped note at central")
        written = written_seqs(tmp_path / "bus-a")
        wait_all_stored(tmp_path, "bus-a", written)
    lost = dropped()
    got = set(stored_seqs(tmp_path, "bus-a"))
    assert lost and not (set(lost) & got)
    assert got | set(lost) == set(range(1, max(got) + 1)), "a gap nobody reported"


def test_two_ingest_workers_on_a_shared_subscription_store_everything_once(
    tmp_path: Path, port: int, procs: Procs
) -> None:
    buses = ("bus-a", "bus-b", "bus-c")
    written = {b: prefill(tmp_path / b, 1500, created=time.time() - 1500) for b in buses}
    with broker_on(tmp_path / "mq", port):
        procs.central("worker-1", "--group", "ingest", "--client-id", "central-1")
        procs.central("worker-2", "--group", "ingest", "--client-id", "central-2")
        for b in buses:
            procs.agent(b)
        for b in buses:
            wait_all_stored(tmp_path, b, written[b])
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in (1, 2)]
    assert all("central subscribed" in text for text in logs)
    db = tmp_path / "central.sqlite"
    for b in buses:
        order = [r[0] for r in rows(db, "SELECT t FROM telemetry WHERE bus = ? ORDER BY seq", b)]
        assert order == sorted(order), f"{b}: stored order differs from the bus's order"


def test_a_budget_drop_of_a_thousand_gapped_ranges_is_named_whole_in_bounded_notes(
    tmp_path: Path,
) -> None:
    # A long night in the depot: thinning to one record a minute leaves one gap a minute.
    written = prefill(tmp_path / "bus-a", 60_000, created=time.time() - 100_000)
    box = Outbox(tmp_path / "bus-a" / "agent.sqlite")
    try:
        upkeep = OutboxUpkeep(box, EventRecorder(box, wake=lambda: None), history_s=86_400)
        box.budget_bytes = box.size_bytes // 20
        count = upkeep.once()
        kept = {p.seq for p in box.pending(len(written), kind="telemetry")}
        notes = [codec.decode(Event, p.body) for p in box.pending(1000, kind="event")]
    finally:
        box.close()
    lost = set(written) - kept
    assert len(ranges(sorted(lost))) > 900, "the drop should leave many gaps"
    assert notes and all(n.kind == "dropped" for n in notes)
    assert len(notes) > 1
    assert all(len(str(n.data["ranges"])) <= RANGES_CHARS for n in notes)
    named: list[int] = []
    for n in notes:
        pairs = [tuple(map(int, r.split("-"))) for r in str(n.data["ranges"]).split(",")]
        named += expand(pairs)  # type: ignore[arg-type]
    assert len(named) == len(set(named)), "a range named twice"
    assert set(named) == lost, f"{len(lost - set(named))} dropped records named by no note"
    assert sum(int(n.data["records"]) for n in notes) == count == len(lost)  # type: ignore[call-overload]
