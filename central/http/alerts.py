"""GTFS-Realtime Service Alerts for diversions (`/gtfs-rt/alerts`). Pure: the clock and the
stop names are arguments.

One alert per diversion in force or announced (entity id = diversion id): effect DETOUR, the
active period of its window, the route (or each of its trips) as informed entities and each
skipped stop on that route too, so a trip planner can mark the stops. The header is the
dispatcher's notice in German and English (a generic one if none was given); the description
names the skipped and the temporary stops. A diversion whose alert cannot be built (a window
protobuf refuses) is left out and counted, never the whole feed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from google.transit import gtfs_realtime_pb2 as rt

from protocols.schemas import Diversion

__all__ = ["service_alerts"]

GTFS_RT_VERSION = "2.0"
SKIPPED = "gtfs_rt_skipped"  # as central/http/gtfs_rt.py counts what it leaves out
log = logging.getLogger("busfleet.central.gtfs_rt")
StopName = Callable[[str], str | None]


def _no_names(_stop_id: str) -> str | None:
    return None


def _translate(text: Any, de: str, en: str) -> None:
    for lang, value in (("de", de), ("en", en)):
        if value:
            item = text.translation.add()
            item.text = value
            item.language = lang


def service_alerts(
    diversions: Iterable[Diversion],
    now: float,
    *,
    route_name: StopName = _no_names,
    stop_name: StopName = _no_names,
    counters: MutableMapping[str, int] | None = None,
) -> Any:
    """A FeedMessage with one Alert per diversion that has not ended by `now`."""
    feed = rt.FeedMessage()
    feed.header.gtfs_realtime_version = GTFS_RT_VERSION
    feed.header.incrementality = rt.FeedHeader.FULL_DATASET
    feed.header.timestamp = int(now)
    for d in sorted(diversions, key=lambda d: d.id):
        if d.valid_to is not None and d.valid_to <= now:
            continue
        entity = rt.FeedEntity()
        entity.id = d.id
        try:
            _alert(entity.alert, d, route_name, stop_name)
        except (ValueError, TypeError, OverflowError) as exc:  # what protobuf refuses
            if counters is not None:
                counters[SKIPPED] = counters.get(SKIPPED, 0) + 1
            log.warning("GTFS-RT alerts: left out diversion %s: %s", d.id, exc)
            continue
        feed.entity.add().CopyFrom(entity)
    return feed


def _alert(alert: Any, d: Diversion, route_name: StopName, stop_name: StopName) -> None:
    period = alert.active_period.add()
    if d.valid_from is not None:
        period.start = int(d.valid_from)
    if d.valid_to is not None:
        period.end = int(d.valid_to)
    if d.trips:
        for trip_id in d.trips:
            selector = alert.informed_entity.add()
            selector.route_id = d.route_id
            selector.trip.trip_id = trip_id
    else:
        alert.informed_entity.add().route_id = d.route_id
    for stop_id in d.skip:
        selector = alert.informed_entity.add()
        selector.route_id = d.route_id
        selector.stop_id = stop_id
    alert.cause = rt.Alert.OTHER_CAUSE
    alert.effect = rt.Alert.DETOUR
    line = route_name(d.route_id) or d.route_id
    _translate(
        alert.header_text,
        d.notice_de or f"Umleitung Linie {line}",
        d.notice_en or (f"Diversion on route {line}" if not d.notice_de else ""),
    )
    skipped = [stop_name(s) or s for s in d.skip]
    temps = [t.name for t in d.temp_stops]
    de = [f"Entfällt: {', '.join(skipped)}." if skipped else ""]
    de.append(f"Ersatzhaltestelle: {', '.join(temps)}." if temps else "")
    en = [f"Not served: {', '.join(skipped)}." if skipped else ""]
    en.append(f"Temporary stop: {', '.join(temps)}." if temps else "")
    _translate(alert.description_text, " ".join(filter(None, de)), " ".join(filter(None, en)))
