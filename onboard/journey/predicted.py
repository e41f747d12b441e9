"""The journey's expected times from central's prediction model (issue 17).

Central publishes a small model for the bus's routes in its desired document
(`DesiredState.predictions`: segment and dwell tables of the coming hours, learned from the
fleet's history); `with_predictions` puts the shared predictor's times (protocols/predict.py,
the same code central's GTFS-RT runs) into a `JourneyState`'s upcoming calls, so the display,
the portal and the driver terminal all show them. Without a model the tracker's timetable +
current delay stays. Pure.
"""

from __future__ import annotations

import dataclasses

from onboard.journey.plan import TripPlan
from onboard.journey.states import JourneyState
from protocols.predict import LiveState, ModelTables, ScheduledStop, predict

__all__ = ["with_predictions"]


def with_predictions(state: JourneyState, plan: TripPlan, tables: ModelTables) -> JourneyState:
    """`state` with each upcoming call's `expected_t` predicted (the stop the bus stands at
    keeps its arrival time)."""
    if state.finished or not state.upcoming or plan.trip_id != state.trip_id:
        return state
    stops = [
        ScheduledStop(s.stop_id, s.sequence, plan.arrival_t(s.index), plan.departure_t(s.index))
        for s in plan.stops
    ]
    k = state.stop_index
    progress = None
    if not state.at_stop and k > 0 and state.dist_m is not None:
        a, b = plan.stops[k - 1].dist_m, plan.stops[k].dist_m
        if b > a:
            progress = min(1.0, max(0.0, (state.dist_m - a) / (b - a)))
    live = LiveState(state.t, k, at_stop=state.at_stop, progress=progress)
    predicted = {k + j: p.arrival_t for j, p in enumerate(predict(stops, live, tables))}
    upcoming = tuple(
        c
        if (state.at_stop and c.index == k) or c.index not in predicted
        else dataclasses.replace(c, expected_t=predicted[c.index])
        for c in state.upcoming
    )
    return dataclasses.replace(state, upcoming=upcoming)
