"""Dispatchers' requests about releases and rollouts (issue 16), as timetable_requests.py.

The rules are central/rollouts.py's; a rollout's first wave goes into the desired documents
at once (`c.desired`: dispatch publishes them), the later waves by the service's rollout task
(central/service/rollout_task.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from central.config import CentralConfig
from central.desired import Published
from central.rollouts import bus_releases, cancel_rollout, rollout_status, start_rollout
from central.store.db import CentralStore
from protocols.release_requests import BusReleases, CancelRollout, RolloutStatus, StartRollout
from protocols.requests import Record, RequestBase
from protocols.schemas import Scalar

__all__ = ["Context", "handlers"]

Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]
Page = Callable[[Any, list[Record], int], Answer]
Handler = Callable[[Any, Any], Answer]

# The scalar parts of a rollout's status, for the reply's `result`.
_SUMMARY = ("id", "version", "state", "wave", "waves", "buses", "pending", "assigned")


class Context(Protocol):
    """What these handlers use of dispatch's `Ctx`."""

    store: CentralStore
    user: str
    now: float
    desired: Published
    records: list[Record]


def handlers(config: CentralConfig, page: Page) -> dict[type[RequestBase], Handler]:
    """The handlers of this module's requests, for dispatch's table."""

    def start(c: Context, r: StartRollout) -> Answer:
        status, superseded, published = start_rollout(
            c.store, config, r.version, r.to, waves=r.waves, halt_on=r.halt_on, now=c.now, by=c.user
        )
        c.desired.update(published)
        result: dict[str, Scalar] = {k: status[k] for k in _SUMMARY}
        result["rollout"] = status["id"]
        result["superseded"] = ",".join(superseded)
        assigned: list[dict[str, Scalar]] = [
            {"bus": b, "version": v} for b, (v, _) in sorted(published.items())
        ]
        return result, {"assigned": assigned}

    def cancel(c: Context, r: CancelRollout) -> Answer:
        status = cancel_rollout(c.store, r.rollout, c.now)
        return {k: status[k] for k in _SUMMARY}, {}

    def status(c: Context, r: RolloutStatus) -> Answer:
        return page(c, rollout_status(c.store, r.rollout), r.offset)

    def releases(c: Context, r: BusReleases) -> Answer:
        return page(c, bus_releases(c.store), r.offset)

    return {
        StartRollout: start,
        CancelRollout: cancel,
        RolloutStatus: status,
        BusReleases: releases,
    }
