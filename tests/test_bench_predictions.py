"""bench/predictions.py runs (tiny) and ends with one JSON line of mean absolute errors by
horizon for the model and the timetable + current delay; with its seed the run is
deterministic, so the model's lead at 10-20 minutes is asserted too (no time is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_predictions_bench_prints_mae_by_horizon_and_the_model_wins_at_10_to_20_min() -> None:
    argv = [
        sys.executable, str(REPO / "bench" / "predictions.py"),
        "--history-days", "7", "--test-days", "1", "--routes", "1", "--step-s", "300",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures["mae_s"]) == {"0-5", "5-10", "10-20", "20-40"}
    for horizon, pair in figures["mae_s"].items():
        assert set(pair) == {"model", "baseline"}, horizon
        assert pair["model"] > 0 and pair["baseline"] > 0, horizon
        assert figures["pairs"][horizon] > 0
    ten_twenty = figures["mae_s"]["10-20"]
    assert ten_twenty["model"] <= 0.75 * ten_twenty["baseline"]
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert json.loads(again.stdout.strip().splitlines()[-1]) == figures  # seeded: repeatable
