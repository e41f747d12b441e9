"""The prediction model to the buses: each bus with a route gets, in its desired document, the
part of central's model about its routes' stops for the coming hours (`DesiredState.
predictions`), so that its display, portal and driver terminal show the same predicted times
as GTFS-RT, also offline. Run by the service's desired-state sync (central/service/sync.py,
the leader's in a group): each model the process's `ModelKeeper` learns (hourly, off the event
loop: central/predictions/keeper.py) goes out once, cut to the hours after it was learned.

A part holds the buckets from now to `horizon_s` ahead (and one either side, for the
interpolation) plus the whole-day rows: a route of 35 stops is a few hundred rows. Nothing is
sent while nothing is learned: a bus without a model keeps timetable + current delay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from central.desired import Published, update_desired
from central.predictions.keeper import ModelKeeper
from central.predictions.learn import model_for_stops
from central.store import gtfs as gtfs_db
from central.store.db import CentralStore
from protocols import codec
from protocols.errors import CodecError
from protocols.predict import ALL_DAY, PredictionModel, bucket_of
from protocols.schemas import DesiredState

__all__ = ["ModelSync", "coming_hours"]

log = logging.getLogger("busfleet.central.predictions")
# A desired document is at most codec.MAX_PAYLOAD (256 KiB); a part bigger than this (a block
# over many routes) keeps only its whole-day rows.
MAX_PART_BYTES = 96 * 1024


def coming_hours(model: PredictionModel, now: float, horizon_s: float) -> PredictionModel:
    """`model` cut to the buckets of [now, now + horizon_s] (one either side) and ALL_DAY."""
    per_day = -(-86_400 // model.bucket_s)
    keep: set[tuple[int, int]] = set()
    t = now
    while t <= now + horizon_s:
        day, pos = bucket_of(t, model.tz, model.bucket_s)
        b = int(pos)
        keep.update((day, (b + d) % per_day) for d in (-1, 0, 1))
        t += model.bucket_s / 2
    return msgspec.structs.replace(
        model,
        segments=[s for s in model.segments if s.bucket == ALL_DAY or (s.day, s.bucket) in keep],
        dwells=[d for d in model.dwells if d.bucket == ALL_DAY or (d.day, d.bucket) in keep],
    )


def _giving(part: PredictionModel) -> Callable[[DesiredState], DesiredState]:
    def change(doc: DesiredState) -> DesiredState:
        return msgspec.structs.replace(doc, predictions=part)

    return change


class ModelSync:
    """Put each bus's part of the keeper's latest model into its desired document, once per
    model learned."""

    def __init__(
        self, store: CentralStore, models: ModelKeeper, *, horizon_s: float = 4 * 3600.0
    ) -> None:
        self.store = store
        self.models = models
        self.horizon_s = horizon_s
        self._sent: PredictionModel | None = None  # the model last handed out

    def step(self, now: float) -> Published:
        """bus -> (version, payload) of the documents given a new model part."""
        model = self.models.poll(now)
        if model is None or model is self._sent:
            return {}
        self._sent = model
        if not model.segments and not model.dwells:
            return {}
        model = coming_hours(model, now, self.horizon_s)
        parts: dict[frozenset[str], PredictionModel] = {}
        published: Published = {}
        for bus, body in self.store.all_desired():
            try:
                doc = codec.decode(DesiredState, body)
            except CodecError:
                continue
            routes = frozenset(gtfs_db.routes_of(self.store, doc.assignment))
            if not routes:
                continue
            if routes not in parts:
                stops: set[str] = set()
                for route in routes:
                    stops |= gtfs_db.route_stops(self.store, route)
                part = model_for_stops(model, stops)
                if len(msgspec.json.encode(part)) > MAX_PART_BYTES:
                    part = msgspec.structs.replace(
                        part,
                        segments=[s for s in part.segments if s.bucket == ALL_DAY],
                        dwells=[d for d in part.dwells if d.bucket == ALL_DAY],
                    )
                parts[routes] = part
            part = parts[routes]
            if doc.predictions == part or not (part.segments or part.dwells):
                continue
            published[bus] = update_desired(self.store, bus, _giving(part))
        if published:
            log.info("prediction model sent to %d buses", len(published))
        return published
