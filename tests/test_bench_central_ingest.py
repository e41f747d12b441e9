"""bench/central_ingest.py runs (tiny: a few buses, a few seconds) on both backends and prints
its figures as one JSON line: on SQLite with one central, and on a PostgreSQL cluster of its own
with two central instances as one group. Every record published is stored, whichever instance
took it, and receipts come back. Times are the benchmark's business, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

FIGURES = {
    "backend",
    "instances",
    "rate_per_s",
    "p99_ms",
    "central_cpu_pct",
    "central_cpu_us_per_record",
    "bare_paho_rate_per_s",
    "bare_paho_cpu_us_per_record",
    "backlog_rate_per_s",
    "bare_paho_backlog_rate_per_s",
    "efficiency",
    "machine_cpu_pct",
    "published",
    "stored",
    "postgres_cpu_pct",
}


def run_bench(tmp_path: Path, *extra: str) -> dict[str, Any]:
    argv = [
        sys.executable, str(REPO / "bench" / "central_ingest.py"), "--buses", "20",
        "--seconds", "4", "--warmup", "1", "--batch", "2", "--backlog", "400", "--drain", "30",
        "--workdir", str(tmp_path), *extra,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures) >= FIGURES
    return figures


@pytest.mark.parametrize(("backend", "instances"), [("sqlite", 1), ("postgresql", 2)])
def test_the_ingest_bench_stores_every_record_on_each_backend(
    tmp_path: Path, backend: str, instances: int
) -> None:
    figures = run_bench(tmp_path, "--backend", backend, "--instances", str(instances))
    assert figures["backend"] == backend
    assert figures["instances"] == instances
    # 5 s at 1 Hz in messages of 2 records (3 a bus, the last one's 6 records), then the backlog
    assert figures["published"] == 20 * 3 * 2 + figures["backlog_records"]
    assert figures["backlog_records"] >= 400
    assert figures["stored"] == figures["published"]
    assert figures["latency_samples"] > 0
    assert figures["missing_receipts"] == 0
    if instances > 1:
        assert set(figures["central_cpu_pct_per_instance"]) == {"central-0", "central-1"}
        assert figures["postgres_cpu_pct"] is not None  # the bench's own cluster
    else:
        assert figures["postgres_cpu_pct"] is None
