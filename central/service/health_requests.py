"""Dispatchers' requests about fleet health (issue 16), as timetable_requests.py.

`FleetHealth` answers the newest health report of each bus central has a fleet entry of (or
of `bus`) as records, a record a bus by bus id: the report's time, whether it came backfilled,
when central received it, and the figures the bus sent (onboard/health/collect.py); the bus
detail (`Detail`, central/service/queries.py) carries the same figures as `health.*` results.
The reports are the buses' `health` events as the ingest stored them (central/store/health.py);
the alarms they raise are the alarm center's (central/fleet/health.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from central.config import CentralConfig
from central.errors import Refused
from central.fleet.health import HealthParams
from central.store.db import CentralStore
from central.store.health import latest_health
from protocols import topics
from protocols.errors import ProtocolError
from protocols.requests import FleetHealth, Record, RequestBase
from protocols.schemas import Scalar

__all__ = ["handlers", "health_params", "health_record", "health_result"]

Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]
Handler = Callable[[Any, Any], Answer]
Page = Callable[[Any, list[Record], int], Answer]


class Context(Protocol):
    """What these handlers use of dispatch's `Ctx`."""

    store: CentralStore
    now: float


def health_params(config: CentralConfig) -> HealthParams:
    """central.toml's `health_*` keys for the alarm center."""
    return HealthParams(
        disk_free_pct=config.health_disk_free_pct,
        disk_free_mb=config.health_disk_free_mb,
        restarts=config.health_restarts,
        restart_window_s=config.health_restart_window_s,
    )


def _figures(text: Any) -> dict[str, Scalar]:
    """A health event's data: flat scalars only (what the ingest stored validated as such)."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {
        str(k): v for k, v in value.items() if v is None or isinstance(v, str | int | float | bool)
    }


def health_record(store: CentralStore, bus: str) -> Record | None:
    """The bus's newest health report as one flat record, or None if it never sent one."""
    row = latest_health(store, bus)
    if row is None:
        return None
    return {
        **_figures(row["data"]),
        "bus": bus,
        "t": row["t"],
        "backfill": bool(row["backfill"]),
        "received": row["received"],
    }


def health_result(store: CentralStore, bus: str) -> dict[str, Scalar]:
    """The bus detail's `health.*` results (nothing if it never sent a report)."""
    record = health_record(store, bus)
    if record is None:
        return {}
    return {f"health.{k}": v for k, v in record.items() if k != "bus"}


def handlers(config: CentralConfig, page: Page) -> dict[type[RequestBase], Handler]:
    """The handlers of this module's requests, for dispatch's table."""

    def fleet_health(c: Context, r: FleetHealth) -> Answer:
        if r.bus is not None:
            try:
                buses = [topics.check_bus_id(r.bus.strip())]
            except ProtocolError as exc:
                raise Refused(str(exc)) from None
        else:
            buses = sorted({str(row["bus"]) for row in c.store.buses()})
        records = [rec for bus in buses if (rec := health_record(c.store, bus)) is not None]
        if r.bus is not None and not records:
            raise Refused(f"no health report from {buses[0]} yet")
        return page(c, records, r.offset)

    return {FleetHealth: fleet_health}
