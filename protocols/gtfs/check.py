"""Checking routes, stops, trips and shapes of a GTFS feed into rows ready to store.

Each reader takes a streamed `Table`, adds every problem to a `Report` and returns (or, for
shapes, yields) plain tuples in the column order of central's `gtfs_*` tables. Errors are what
makes the data wrong or ambiguous (a value that does not parse, a reference to nothing, a
duplicate key); warnings are what GTFS asks for but nothing here depends on (a stop without a
name, an odd colour). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

from protocols.gtfs.calendar import Agency
from protocols.gtfs.table import Report, Table, is_count

__all__ = [
    "ROUTE_COLUMNS",
    "SHAPE_COLUMNS",
    "STOP_COLUMNS",
    "TRIP_COLUMNS",
    "RouteRow",
    "ShapeReader",
    "StopRow",
    "TripRow",
    "read_routes",
    "read_stops",
    "read_trips",
]

# Row layouts, in the column order of central's tables (central/store/gtfs.py).
RouteRow = tuple[str, str, str, str, int, str | None, str | None]
StopRow = tuple[str, str, str, float | None, float | None, int, str | None]
TripRow = tuple[str, str, str, str | None, str, int | None, str | None]
ShapeRow = tuple[str, int, float, float, float | None]

ROUTE_COLUMNS = ("route_id", "route_type")
STOP_COLUMNS = ("stop_id",)
TRIP_COLUMNS = ("route_id", "service_id", "trip_id")
SHAPE_COLUMNS = ("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence")

# route_type: the basic GTFS types and the extended (Google, HVT) range.
_ROUTE_TYPES = frozenset(range(13)) | frozenset(range(100, 1703))


def _value(row: list[str], i: int | None) -> str:
    return "" if i is None else row[i]


def _is_color(value: str) -> bool:
    return len(value) == 6 and all(c in "0123456789abcdefABCDEF" for c in value)


def _number(
    report: Report, file: str, line: int, column: str, raw: str, lo: float, hi: float
) -> float | None:
    """A float in [lo, hi], or None after reporting why not."""
    if not raw:
        report.error("missing_value", file, line, column, "required value is empty")
        return None
    try:
        value = float(raw)
    except ValueError:
        report.error("bad_value", file, line, column, f"not a number: {raw!r}")
        return None
    if not lo <= value <= hi:  # also refuses nan
        report.error("bad_value", file, line, column, f"{raw} outside {lo:g}..{hi:g}")
        return None
    return value


def read_routes(table: Table, report: Report, agencies: Sequence[Agency]) -> dict[str, RouteRow]:
    """routes.txt; every route's agency must exist when the feed has several agencies."""
    name = table.name
    i_id, i_type = table.require("route_id"), table.require("route_type")
    i_agency = table.index("agency_id")
    i_short, i_long = table.index("route_short_name"), table.index("route_long_name")
    i_color, i_text = table.index("route_color"), table.index("route_text_color")
    agency_ids = {a.agency_id for a in agencies}
    routes: dict[str, RouteRow] = {}
    for line, row in table:
        rid = row[i_id]
        if not rid:
            report.error("missing_value", name, line, "route_id", "required value is empty")
            continue
        if rid in routes:
            report.error("duplicate_key", name, line, "route_id", f"duplicate {rid!r}")
            continue
        agency = _value(row, i_agency)
        if agency and agency not in agency_ids:
            report.error("unknown_agency", name, line, "agency_id", f"unknown agency {agency!r}")
        elif not agency and len(agency_ids) > 1:
            report.error("missing_value", name, line, "agency_id", "needed: several agencies")
        short, long = _value(row, i_short), _value(row, i_long)
        if not short and not long:
            report.error(
                "missing_value", name, line, "route_short_name", "neither short nor long name"
            )
        raw_type = row[i_type]
        if not is_count(raw_type):
            report.error("bad_value", name, line, "route_type", f"not an integer: {raw_type!r}")
            continue
        if int(raw_type) not in _ROUTE_TYPES:
            report.warn("unknown_route_type", name, line, "route_type", f"unknown {raw_type}")
        colors: list[str | None] = []
        for column, i in (("route_color", i_color), ("route_text_color", i_text)):
            value = _value(row, i)
            if value and not _is_color(value):
                report.warn("bad_color", name, line, column, f"not a hex colour: {value!r}")
                value = ""
            colors.append(value or None)
        routes[rid] = (rid, agency, short, long, int(raw_type), colors[0], colors[1])
    return routes


def read_stops(table: Table, report: Report) -> dict[str, StopRow]:
    """stops.txt; generic nodes and boarding areas (location_type 3, 4) may lack coordinates."""
    name = table.name
    i_id = table.require("stop_id")
    i_lat, i_lon = table.index("stop_lat"), table.index("stop_lon")
    i_name, i_code = table.index("stop_name"), table.index("stop_code")
    i_type, i_parent = table.index("location_type"), table.index("parent_station")
    stops: dict[str, StopRow] = {}
    for line, row in table:
        sid = row[i_id]
        if not sid:
            report.error("missing_value", name, line, "stop_id", "required value is empty")
            continue
        if sid in stops:
            report.error("duplicate_key", name, line, "stop_id", f"duplicate {sid!r}")
            continue
        raw_type = _value(row, i_type) or "0"
        if raw_type not in ("0", "1", "2", "3", "4"):
            report.error("bad_value", name, line, "location_type", f"0 to 4, not {raw_type!r}")
            continue
        kind = int(raw_type)
        lat = lon = None
        raw_lat, raw_lon = _value(row, i_lat), _value(row, i_lon)
        if kind <= 2 or raw_lat or raw_lon:
            lat = _number(report, name, line, "stop_lat", raw_lat, -90.0, 90.0)
            lon = _number(report, name, line, "stop_lon", raw_lon, -180.0, 180.0)
            if lat is None or lon is None:
                continue
            if abs(lat) < 1e-6 and abs(lon) < 1e-6:
                report.warn("null_island", name, line, "stop_lat", "at 0, 0: a missing position?")
        stop_name = _value(row, i_name)
        if not stop_name and kind <= 2:
            report.warn(
                "missing_value", name, line, "stop_name", "a stop passengers see needs a name"
            )
        parent = _value(row, i_parent) or None
        stops[sid] = (sid, _value(row, i_code), stop_name, lat, lon, kind, parent)
    for sid, stop in stops.items():
        if stop[6] is not None and stop[6] not in stops:
            report.error(
                "unknown_stop", name, None, "parent_station", f"{sid}: unknown parent {stop[6]!r}"
            )
    return stops


def read_trips(
    table: Table,
    report: Report,
    routes: Collection[str],
    services: Collection[str] | None,
    shapes: Collection[str] | None,
) -> dict[str, TripRow]:
    """trips.txt. `services` None: the feed has no calendar at all (reported elsewhere);
    `shapes` None: no shapes.txt, trips drive stop to stop and their shape_id is only noted."""
    name = table.name
    i_id, i_route = table.require("trip_id"), table.require("route_id")
    i_service = table.require("service_id")
    i_shape, i_head = table.index("shape_id"), table.index("trip_headsign")
    i_dir, i_block = table.index("direction_id"), table.index("block_id")
    trips: dict[str, TripRow] = {}
    for line, row in table:
        tid, rid, service = row[i_id], row[i_route], row[i_service]
        problems = False
        for column, value in (("trip_id", tid), ("route_id", rid), ("service_id", service)):
            if not value:
                report.error("missing_value", name, line, column, "required value is empty")
                problems = True
        if problems:
            continue
        if tid in trips:
            report.error("duplicate_key", name, line, "trip_id", f"duplicate {tid!r}")
            continue
        if rid not in routes:
            report.error("unknown_route", name, line, "route_id", f"unknown route {rid!r}")
        if services is not None and service not in services:
            report.error(
                "unknown_service", name, line, "service_id", f"{service!r} is in no calendar"
            )
        shape = _value(row, i_shape) or None
        if shape is not None:
            if shapes is None:
                report.warn(
                    "no_shapes_file", name, line, "shape_id", "no shapes.txt: stop-to-stop line"
                )
            elif shape not in shapes:
                report.error("unknown_shape", name, line, "shape_id", f"unknown shape {shape!r}")
        direction = _value(row, i_dir)
        if direction not in ("", "0", "1"):
            report.error("bad_value", name, line, "direction_id", f"0 or 1, not {direction!r}")
            continue
        trips[tid] = (
            tid,
            rid,
            service,
            shape,
            _value(row, i_head),
            int(direction) if direction else None,
            _value(row, i_block) or None,
        )
    return trips


class ShapeReader:
    """shapes.txt, streamed: yields point rows; `shape_ids` and `points` fill as it goes.

    Points of a shape usually come together; a sequence number repeated within such a run is
    reported here with its line, one repeated across runs only by the store's key.
    """

    def __init__(self, table: Table, report: Report) -> None:
        self.table = table
        self.report = report
        self.shape_ids: set[str] = set()
        self.points = 0

    def rows(self) -> Iterator[ShapeRow]:
        table, report, name = self.table, self.report, self.table.name
        i_id, i_lat, i_lon, i_seq = (table.require(c) for c in SHAPE_COLUMNS)
        i_dist = table.index("shape_dist_traveled")
        current = ""
        seqs: set[int] = set()
        for line, row in table:
            sid = row[i_id]
            if not sid:
                report.error("missing_value", name, line, "shape_id", "required value is empty")
                continue
            if sid != current:
                current, seqs = sid, set()
            raw_seq = row[i_seq]
            if not is_count(raw_seq):
                report.error(
                    "bad_value", name, line, "shape_pt_sequence", f"not an integer: {raw_seq!r}"
                )
                continue
            seq = int(raw_seq)
            if seq in seqs:
                report.error("duplicate_key", name, line, "shape_pt_sequence", f"{seq} repeated")
                continue
            seqs.add(seq)
            try:
                lat, lon = float(row[i_lat]), float(row[i_lon])
                ok = -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0
            except ValueError:
                ok = False
            if not ok:  # say which value is wrong, and how
                _number(report, name, line, "shape_pt_lat", row[i_lat], -90, 90)
                _number(report, name, line, "shape_pt_lon", row[i_lon], -180, 180)
                continue
            dist = None
            if i_dist is not None and row[i_dist]:
                dist = _number(
                    report, name, line, "shape_dist_traveled", row[i_dist], 0.0, float("inf")
                )
            self.shape_ids.add(sid)
            self.points += 1
            yield (sid, seq, lat, lon, dist)
