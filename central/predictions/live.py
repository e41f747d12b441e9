"""Predictions for the buses on their trips now, for GTFS-RT (central/http/gtfs_rt.py).

`TripPredictor` predicts from the model the process's `ModelKeeper` holds (learned off the
event loop, central/predictions/keeper.py; until the first is ready, an empty one: timetable
+ current delay) with each trip's timetable, and turns a bus's reported `JourneyStatus` into
the predictor's live state:

- the stop list is the trip's calls on its service day (`start_date`, local midnight of the
  feed's time zone), the index that of the reported stop_sequence;
- at a stop: the bus stands at it since the status's time;
- driving: where it is along the segment comes from its delay, which the bus computes as
  t - the scheduled time at its position: that scheduled time placed between the scheduled
  departure from the stop before and arrival at the next gives the share driven.

The prediction is made as of the status's time and then no earlier than now (a status is
refreshed at each stop and whenever the delay moves by 30 s).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from central.predictions.keeper import ModelKeeper
from central.store import gtfs as gtfs_db
from central.store.db import CentralStore
from central.store.predictions import trip_schedule
from protocols.predict import (
    LiveState,
    ModelTables,
    PredictionModel,
    ScheduledStop,
    StopPrediction,
    predict,
)
from protocols.schemas import JourneyStatus

__all__ = ["TripPredictor", "live_state", "service_stops"]

SANE_S = 12 * 3600.0  # a status this far outside its trip's scheduled run predicts nothing


def service_stops(
    calls: list[tuple[str, int, int, int]], start_date: str, tz: str
) -> list[ScheduledStop]:
    """A trip's calls as unix times on the service day `start_date` (YYYYMMDD)."""
    day = dt.datetime.strptime(start_date, "%Y%m%d").date()
    try:
        zone: dt.tzinfo = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    midnight = dt.datetime.combine(day, dt.time(), zone).timestamp()
    return [ScheduledStop(s, q, midnight + a, midnight + d) for s, q, a, d in calls]


def live_state(stops: list[ScheduledStop], journey: JourneyStatus) -> LiveState | None:
    """The predictor's live state from a bus's reported journey; None: no stop known."""
    index = next((i for i, s in enumerate(stops) if s.sequence == journey.stop_sequence), None)
    if index is None and journey.stop_id:
        index = next((i for i, s in enumerate(stops) if s.stop_id == journey.stop_id), None)
    if index is None:
        return None
    if journey.at_stop or index == 0:
        return LiveState(journey.t, index, at_stop=journey.at_stop, since_t=journey.t)
    progress = None
    if journey.delay_s is not None:
        a, b = stops[index - 1], stops[index]
        span = b.arrival_t - a.departure_t
        if span > 0:
            progress = min(1.0, max(0.0, (journey.t - journey.delay_s - a.departure_t) / span))
    return LiveState(journey.t, index, progress=progress)


class TripPredictor:
    """Predictions per bus from the keeper's model and the store's timetable (see the module
    docstring)."""

    def __init__(
        self,
        store: CentralStore,
        models: ModelKeeper,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.models = models
        self.clock = clock
        self._seen: ModelTables | None = None
        self._tz: str | None = None
        self._empty = ModelTables(PredictionModel())
        self._calls: dict[str, list[tuple[str, int, int, int]]] = {}

    def tables(self) -> ModelTables:
        """The keeper's latest model (asking it starts a learn when one is due, off the loop);
        an empty one until the first is learned."""
        self.models.poll(self.clock())
        tables = self.models.tables
        if self._tz is None or tables is not self._seen:  # a new model: maybe a new timetable
            self._seen = tables
            self._tz = gtfs_db.timezone(self.store) or "UTC"
            self._calls.clear()
            self._empty = ModelTables(PredictionModel(tz=self._tz))
        return self._empty if tables is None else tables

    def __call__(self, trip_id: str, journey: JourneyStatus, now: float) -> list[StopPrediction]:
        """The predicted calls ahead of the bus, none before `now`; [] when it cannot say."""
        if journey.finished or not journey.start_date:
            return []
        tables = self.tables()
        if trip_id not in self._calls:
            self._calls[trip_id] = trip_schedule(self.store, trip_id)
        try:
            stops = service_stops(self._calls[trip_id], journey.start_date, self._tz or "UTC")
        except ValueError:
            return []
        if not stops or not (
            stops[0].departure_t - SANE_S <= journey.t <= stops[-1].arrival_t + SANE_S
        ):
            return []  # a status far from its trip's service day: a clock or date gone wrong
        live = live_state(stops, journey)
        if live is None:
            return []
        out = []
        for p in predict(stops, live, tables):
            arrival = max(now, p.arrival_t)
            out.append(
                StopPrediction(
                    p.stop_id, p.sequence, arrival, max(arrival, p.departure_t), p.uncertainty_s
                )
            )
        return out
