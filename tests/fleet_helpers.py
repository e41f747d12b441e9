"""Helpers for tests against a live pipeline: waiting, reading fleet state and ground truth."""

from __future__ import annotations

import bisect
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from busfleet.broker import Broker
from protocols import codec, topics
from protocols.geo import haversine_m
from protocols.schemas import FleetEntry

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, every: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []


class FleetWatcher:
    """Follows the retained fleet entries that central publishes, as a dashboard does."""

    def __init__(self, broker: Broker) -> None:
        self.entries: dict[str, FleetEntry] = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topics.all_buses(topics.Kind.FLEET))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        entry = codec.decode(FleetEntry, msg.payload)
        self.entries[entry.bus] = entry

    def online(self) -> set[str]:
        return {b for b, e in dict(self.entries).items() if e.online}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Truth:
    """A simulator's ground-truth log, looked up by time."""

    def __init__(self, path: Path) -> None:
        points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        points.sort(key=lambda p: p["t"])
        self.times = [p["t"] for p in points]
        self.points = points

    def at(self, t: float, tolerance_s: float = 0.06) -> dict[str, Any] | None:
        i = bisect.bisect_left(self.times, t)
        near = [j for j in (i - 1, i) if 0 <= j < len(self.times)]
        best = min(near, key=lambda j: abs(self.times[j] - t), default=None)
        if best is None or abs(self.times[best] - t) > tolerance_s:
            return None
        return self.points[best]

    def error_m(self, t: float, lat: float, lon: float) -> float | None:
        p = self.at(t)
        return None if p is None else haversine_m(lat, lon, p["lat"], p["lon"])
