"""agent.toml's [logs] section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogsSection:
    file: str = ""  # empty: {bus.data_dir}/logs/agent.log
    max_mb: float = 20.0  # the log files together (rotated) stay under this
