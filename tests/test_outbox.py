"""The agent's outbox on a real SQLite file."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from onboard.link.outbox import ROW_OVERHEAD, Outbox
from protocols.ranges import expand, ranges


def test_sequence_numbers_are_never_reused_after_history_is_forgotten(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    first = [box.append("telemetry", b"x", created=100.0) for _ in range(3)]
    box.confirm(ranges(first))
    assert box.forget_history(older_than=200.0) == 3
    assert box.append("telemetry", b"y") == first[-1] + 1


def test_confirmed_records_are_no_longer_pending_but_can_be_requeued(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    seqs = [box.append("telemetry", b"r", created=1000.0 + i) for i in range(5)]
    assert box.confirm([(seqs[0], seqs[2])]) == 3
    assert [p.seq for p in box.pending(10)] == seqs[3:]
    assert box.requeue_since(1001.0) == 2
    assert [p.seq for p in box.pending(10)] == seqs[1:]


def test_alarms_and_events_are_sent_before_a_telemetry_backlog(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    tele = [box.append("telemetry", b"t") for _ in range(3)]
    event = box.append("event", b"e")
    alarm = box.append("alarm", b"a")
    assert [p.seq for p in box.pending(10)] == [alarm, event, *tele]


def test_pending_records_come_back_in_order_after_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    seqs = [box.append("telemetry", f"r{i}".encode()) for i in range(5)]
    box.confirm(ranges(seqs[:2]))
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert [p.seq for p in again.pending(10)] == seqs[2:]
    assert [p.body for p in again.pending(2)] == [b"r2", b"r3"]


def test_records_appended_survive_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    code = (
        "import os, sys; from onboard.link.outbox import Outbox\n"
        f"box = Outbox({str(path)!r})\n"
        "for i in range(200): box.append('telemetry', b'r%d' % i)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=os.environ.copy(), check=False)
    assert proc.returncode == -9
    assert Outbox(path).count() == 200


def test_over_budget_history_goes_first_then_old_telemetry_never_events(tmp_path: Path) -> None:
    body = b"x" * 60
    per_row = len(body) + ROW_OVERHEAD
    box = Outbox(tmp_path / "o.sqlite", budget_bytes=per_row * 100)
    now = 100_000.0
    history = [box.append("telemetry", body, created=now - 7200 + i) for i in range(30)]
    box.confirm(ranges(history))
    old = [box.append("telemetry", body, created=now - 7200 + i) for i in range(0, 3600, 10)]
    events = [box.append("event", body, created=now - 7000) for _ in range(20)]
    recent = [box.append("telemetry", body, created=now - 60 + i) for i in range(30)]
    dropped = expand(box.enforce_budget(now))
    assert box.size_bytes <= per_row * 100
    assert box.count(pending_only=False) == box.count()  # history went first
    assert set(dropped) <= set(old), "only old telemetry may be dropped"
    remaining = {p.seq for p in box.pending(10_000)}
    assert set(events) <= remaining and set(recent) <= remaining
    assert remaining | set(dropped) == set(old) | set(events) | set(recent)


@given(st.lists(st.integers(1, 500), max_size=60))
def test_ranges_name_exactly_the_given_sequence_numbers(seqs: list[int]) -> None:
    rs = ranges(seqs)
    assert expand(rs) == sorted(set(seqs))
    assert all(b + 1 < c for (_, b), (c, _) in itertools.pairwise(rs))


def test_the_session_counter_grows_across_restarts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    assert [box.next_counter("session") for _ in range(2)] == [1, 2]
    box.close()
    assert Outbox(tmp_path / "o.sqlite").next_counter("session") == 3
