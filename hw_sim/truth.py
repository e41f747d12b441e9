"""Ground truth of a simulated bus at one instant: what the GPS and CAN simulators encode."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VehicleTruth:
    """The true state of a simulated bus; the GPS sim adds noise, the CAN sim encodes it."""

    t: float  # unix seconds, UTC
    lat: float
    lon: float
    speed_mps: float
    heading_deg: float  # 0..360, true north, clockwise
    odometer_m: float
    doors_open: bool
    engine_rpm: float
    coolant_c: float
    fuel_pct: float
    stop_index: int | None = None  # index into the trip's stops while dwelling there
    stop_id: str | None = None
