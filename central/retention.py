"""Retention: how long central keeps each kind of data, and purging what is past it.

Kinds and their settings (central.toml, days, 0 = keep forever; defaults and reasons in
central/config.py and deploy/README.md):

    positions     retention_positions_days    where a bus was: its driver's working day
    vehicle       retention_vehicle_days      the telemetry rows (speed, doors, fuel, ...)
    events        retention_events_days       journey, driver, alarm and command events
    plays         retention_plays_days        proof of play
    feedback      retention_feedback_days     passengers' feedback
    portal_stats  retention_portal_stats_days the Wi-Fi portal's statistics

Telemetry holds a position and vehicle data in one row: the position is cleared after its
days, the row deleted after the vehicle data's (never fewer days: the config refuses it).
Positions are kept elsewhere too, and cleared after the same days: the agent puts the bus's
`lat`/`lon` into events (every `play`, `gps_lost`, a driver's message), and central into each
alarm (cleared once the alarm is closed; the alarm itself stays, for reports). Purging never
breaks exactly-once: see central/store/retention.py.

The running service purges on its own schedule (central/service/retention_task.py); while
none runs, `busfleet central retention` purges now, and `--dry-run` shows what would go.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from central.config import CentralConfig
from central.store import retention as retention_db
from central.store.db import CentralStore
from central.store.retention import KINDS, Expired

__all__ = ["KINDS", "Expired", "RetentionPolicy", "plan", "purge"]

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days kept per kind (`KINDS`); 0 keeps a kind forever."""

    days: dict[str, int]

    @classmethod
    def from_config(cls, config: CentralConfig) -> RetentionPolicy:
        return cls({kind: int(getattr(config, f"retention_{kind}_days")) for kind in KINDS})

    def cutoffs(self, now: float) -> dict[str, float]:
        """Per kind with a retention, in `KINDS` order: rows from before this time go."""
        return {k: now - d * DAY_S for k in KINDS if (d := self.days.get(k, 0)) > 0}


def plan(store: CentralStore, policy: RetentionPolicy, now: float) -> list[Expired]:
    """What a purge at `now` would remove, per kind with a retention; nothing is changed."""
    return [retention_db.expired(store, k, c) for k, c in policy.cutoffs(now).items()]


def purge(
    store: CentralStore, policy: RetentionPolicy, now: float, batch_rows: int
) -> Iterator[tuple[str, int]]:
    """Purge what is past its time at `now`: one transaction of at most `batch_rows` rows per
    step, yielding (kind, rows) after each, so that the caller can pause in between.

    Positions are cleared before the rows go: the counts then match `plan`'s."""
    for kind, cutoff in policy.cutoffs(now).items():
        while True:
            removed = retention_db.purge_batch(store, kind, cutoff, batch_rows)
            if removed == 0:
                break
            yield kind, removed
            if removed < batch_rows:
                break
