"""Desired documents that change with the clock: message expiry, diversion windows, and the
published timetable for buses central first hears of after it was published.

Both used to run beside the service with an MQTT connection and a reconnect loop each; now
they are one step the service runs every few seconds on its own store, and it publishes what
the step returns on its one client (central/service/service.py). Like every other writer of
desired state, the step hands back the new versions, so that fleet state learns them
directly.

The prediction model is learned by the process's `ModelKeeper` (off the event loop); the
sync only hands each new model to the buses. `keeper` is the same object the HTTP server's
GTFS-RT predictor reads (central/service/serve.py passes it on), so it is learned once.
"""

from __future__ import annotations

from central.desired import Published
from central.diversions import SYNC_S, DiversionSync
from central.messages import EXPIRY_CHECK_S, expire_messages
from central.predictions.keeper import ModelKeeper
from central.predictions.publish import ModelSync
from central.store.db import CentralStore
from central.timetables import newcomers

__all__ = ["SYNC_INTERVAL_S", "DesiredSync"]

SYNC_INTERVAL_S = min(SYNC_S, EXPIRY_CHECK_S)  # how late central may drop what ended


class DesiredSync:
    """Expired messages out, diversions in force in: the documents that need a new version."""

    def __init__(self, store: CentralStore, keeper: ModelKeeper | None = None) -> None:
        self.store = store
        self.diversions = DiversionSync(store)
        self.keeper = keeper or ModelKeeper(store)  # the prediction model (issue 17)
        self.models = ModelSync(store, self.keeper)  # each new one to the buses

    def step(self, now: float) -> Published:
        """One pass; returns bus -> (version, payload) of every document changed."""
        published = dict(expire_messages(self.store, now))
        published.update(self.diversions.step(now))  # a bus in both: the later version wins
        published.update(newcomers(self.store))  # buses first seen since a timetable went out
        published.update(self.models.step(now))
        return published
