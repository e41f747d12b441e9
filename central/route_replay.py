"""A route replay (issue 18): one bus's positions over a time window, for the map.

The store gives the positions oldest first (central/store/operator_reports.py's
`positions`), at most `READ_CAP` of them; more than the replay may carry are thinned evenly
(the first and the last always kept), so that a day at one fix a second still draws the
whole day's track. Pure over the store's answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from central.store import operator_reports as op_db
from central.store.db import CentralStore

__all__ = ["READ_CAP", "Replay", "evenly", "route_replay"]

READ_CAP = 200_000  # positions read for one replay: two days at one a second

T = TypeVar("T")
Point = tuple[float, float, float]  # t, lat, lon


@dataclass(frozen=True, slots=True)
class Replay:
    points: list[Point]
    in_window: int  # positions read (READ_CAP at most)
    cut: bool  # READ_CAP reached: the window's end is missing


def evenly(items: Sequence[T], most: int) -> list[T]:
    """`most` items spread evenly over `items` (all of them when there are no more), the first
    and the last among them."""
    n = len(items)
    if n <= most:
        return list(items)
    if most <= 1:
        return list(items[:most])
    return [items[round(i * (n - 1) / (most - 1))] for i in range(most)]


def route_replay(store: CentralStore, bus: str, since: float, until: float, most: int) -> Replay:
    """Bus `bus`'s positions with since <= t < until, oldest first, `most` at most."""
    rows = op_db.positions(store, bus, since, until, READ_CAP)
    return Replay(evenly(rows, most), len(rows), len(rows) >= READ_CAP)
