"""The one owner of central's learned prediction model in a process: `ModelKeeper`.

Learning reads weeks of stop events (a month of a 100-bus fleet is millions of rows) and takes
seconds; central's event loop, which ingests, must never wait for it. So the keeper learns on a
worker thread with a connection of its own (`store.for_thread()`, SQLite or PostgreSQL), at the
first `poll` and then again once `refresh_s` has passed, and keeps the latest model. Its
consumers, the GTFS-RT predictor (central/predictions/live.py) and the model sent to the buses
(central/predictions/publish.py), ask `poll()`: it returns at once with the model learned last
(None until the first learn has finished: predictions then fall back to timetable + current
delay, as without history) and starts a learn when one is due and none is running.

One keeper per process, shared by both consumers: the model is learned once per `refresh_s`
whoever asks. In a group of central instances each instance keeps its own (its GTFS-RT feed
predicts from it); only the leader publishes it to the buses (the desired sync is the
leader's). A learn that fails is logged and tried again after `retry_s`; the model learned
before stays. An in-memory store has no second connection: it is learned inline (tools and
tests only; `central serve` opens a file or a server).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from central.predictions.learn import learn
from central.store import gtfs as gtfs_db
from central.store.db import CentralStore
from protocols.predict import ModelTables, PredictionModel

__all__ = ["DAYS", "REFRESH_S", "Learner", "ModelKeeper"]

log = logging.getLogger("busfleet.central.predictions")

REFRESH_S = 3600.0  # a new model every hour
DAYS = 14  # learned from the last two weeks
RETRY_S = 300.0  # after a failed learn


class Learner(Protocol):
    """`learn`'s signature: the model from the store's last `days` days of stop events."""

    def __call__(
        self, store: CentralStore, now: float, *, tz: str, days: int
    ) -> PredictionModel: ...


class ModelKeeper:
    """Learns the model off the event loop and keeps the latest (see the module docstring)."""

    def __init__(
        self,
        store: CentralStore,
        *,
        refresh_s: float = REFRESH_S,
        days: int = DAYS,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.time,
        learner: Learner = learn,
    ) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.days = days
        self.retry_s = retry_s
        self.clock = clock
        self.learner = learner
        self.learns = 0  # learns started
        self.failures = 0  # learns that raised
        self._lock = threading.Lock()
        self._model: PredictionModel | None = None
        self._tables: ModelTables | None = None
        self._due = -float("inf")  # clock time of the next learn
        self._worker: threading.Thread | None = None

    @property
    def model(self) -> PredictionModel | None:
        """The model learned last; None before the first learn finished."""
        return self._model

    @property
    def tables(self) -> ModelTables | None:
        """`model` indexed for predictions (built on the worker, not on the loop)."""
        return self._tables

    @property
    def learning(self) -> bool:
        """A learn is running on the worker thread now."""
        return self._worker is not None

    def poll(self, now: float | None = None) -> PredictionModel | None:
        """The latest model, at once; starts a learn on the worker thread when one is due."""
        now = self.clock() if now is None else now
        with self._lock:
            start = self._worker is None and now >= self._due
            if start:
                self._due = now + self.refresh_s
                self.learns += 1
                if self.store.shareable:
                    self._worker = threading.Thread(
                        target=self._threaded, args=(now,), name="prediction-model", daemon=True
                    )
                    self._worker.start()
        if start and not self.store.shareable:
            self._learn(self.store, now)  # in-memory: no other connection (see above)
        return self._model

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running learn to end (tests, tools); False: still running."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def _threaded(self, now: float) -> None:
        try:
            with self.store.for_thread() as store:
                self._learn(store, now)
        except Exception:  # opening the connection failed: logged like a failed learn
            self._failed(now)
        finally:
            with self._lock:
                self._worker = None

    def _learn(self, store: CentralStore, now: float) -> None:
        began = time.monotonic()
        try:
            tz = gtfs_db.timezone(store) or "UTC"
            model = self.learner(store, now, tz=tz, days=self.days)
            tables = ModelTables(model)
        except Exception:
            self._failed(now)
            return
        with self._lock:
            self._model, self._tables = model, tables
        log.info(
            "prediction model learned from %d days in %.1f s: %d segment and %d dwell rows",
            self.days,
            time.monotonic() - began,
            len(model.segments),
            len(model.dwells),
        )

    def _failed(self, now: float) -> None:
        log.exception("learning the prediction model failed; again in %.0f s", self.retry_s)
        with self._lock:
            self.failures += 1
            self._due = min(self._due, now + self.retry_s)
