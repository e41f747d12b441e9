"""agent.toml's [health] section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HealthSection:
    interval_s: float = 300.0  # a health report this often
    # the disk the agent's data (bus.data_dir) may use; 0: the file system's free space only
    data_budget_mb: float = 0.0
