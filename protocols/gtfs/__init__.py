"""GTFS static feeds, sans-IO over the rows of a zip: read, check, report.

    rows        CSV rows with a line limit; GTFS times
    table       one file's columns, issues and the report they add up to
    calendar    agencies, services (calendar.txt and calendar_dates.txt)
    stop_times  stop_times.txt streamed and checked trip by trip
    check       routes, stops, trips and shapes rows for the importer
    feed        the whole feed in memory for a bus or the simulator (trips, stops, shapes)

Errors carry file, line and field (`protocols.errors.GtfsError`).
"""

from protocols.gtfs.feed import Feed, Route, Stop, StopTime, Trip, parse_feed, read_feed
from protocols.gtfs.table import Issue, Report

__all__ = [
    "Feed",
    "Issue",
    "Report",
    "Route",
    "Stop",
    "StopTime",
    "Trip",
    "parse_feed",
    "read_feed",
]
