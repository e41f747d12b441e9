"""The agent's outbox on a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from onboard.outbox import Outbox


def test_sequence_numbers_are_never_reused_after_removal(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    first = [box.append("telemetry", b"x") for _ in range(3)]
    box.remove(first)
    assert box.append("telemetry", b"y") == first[-1] + 1


def test_pending_records_come_back_in_order_after_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    seqs = [box.append("telemetry", f"r{i}".encode()) for i in range(5)]
    box.remove(seqs[:2])
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert [p.seq for p in again.pending(10)] == seqs[2:]
    assert [p.body for p in again.pending(2)] == [b"r2", b"r3"]


def test_records_appended_survive_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    code = (
        "import os, sys; from onboard.outbox import Outbox\n"
        f"box = Outbox({str(path)!r})\n"
        "for i in range(200): box.append('telemetry', b'r%d' % i)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=os.environ.copy(), check=False)
    assert proc.returncode == -9
    assert Outbox(path).count() == 200


def test_the_session_counter_grows_across_restarts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    assert [box.next_counter("session") for _ in range(2)] == [1, 2]
    box.close()
    assert Outbox(tmp_path / "o.sqlite").next_counter("session") == 3
