"""GTFS agencies and service calendars: agency.txt, calendar.txt and calendar_dates.txt.

Which trips run on a day is decided by their `service_id`: calendar.txt gives weekly patterns
between two dates, calendar_dates.txt adds (exception_type 1) or removes (2) single days. A
feed may use either file or both. Readers take a `Table` and collect problems in a `Report`
(the importer), `parse_services` / `parse_agencies` raise the first one (`protocols.gtfs`).
Pure: dates are arguments, never the clock.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from protocols.gtfs.table import Report, Table, parse_date

__all__ = [
    "WEEKDAYS",
    "Agency",
    "Service",
    "ServiceCalendar",
    "parse_agencies",
    "parse_services",
    "read_agencies",
    "read_calendar",
    "read_calendar_dates",
]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CALENDAR_COLUMNS = ("service_id", *WEEKDAYS, "start_date", "end_date")
CALENDAR_DATES_COLUMNS = ("service_id", "date", "exception_type")


@dataclass(frozen=True, slots=True)
class Agency:
    """A transit operator (agency.txt); `timezone` is the feed's clock for all its times."""

    agency_id: str
    name: str
    url: str
    timezone: str
    lang: str = ""
    phone: str = ""


@dataclass(frozen=True, slots=True)
class Service:
    """A weekly pattern of calendar.txt: `days` has bit 0 for Monday ... bit 6 for Sunday."""

    service_id: str
    days: int
    start_date: str  # YYYYMMDD, inclusive
    end_date: str  # YYYYMMDD, inclusive


class ServiceCalendar:
    """The service days of a feed: which service_ids run on a given date."""

    def __init__(
        self, services: Mapping[str, Service], exceptions: Iterable[tuple[str, str, int]]
    ) -> None:
        self.services = dict(services)
        self.added: dict[str, set[str]] = {}  # date -> service_ids added on that day
        self.removed: dict[str, set[str]] = {}
        for service_id, date, kind in exceptions:
            (self.added if kind == 1 else self.removed).setdefault(date, set()).add(service_id)

    @property
    def service_ids(self) -> frozenset[str]:
        """Every service_id either file names."""
        ids = set(self.services)
        for day in (*self.added.values(), *self.removed.values()):
            ids |= day
        return frozenset(ids)

    def active(self, day: datetime.date) -> frozenset[str]:
        """The service_ids that run on `day` (a service day, as the feed's timezone counts)."""
        key = day.strftime("%Y%m%d")
        bit = 1 << day.weekday()
        running = {
            s.service_id
            for s in self.services.values()
            if s.days & bit and s.start_date <= key <= s.end_date
        }
        running |= self.added.get(key, set())
        running -= self.removed.get(key, set())
        return frozenset(running)

    def runs(self, service_id: str, day: datetime.date) -> bool:
        return service_id in self.active(day)


def read_agencies(table: Table, report: Report) -> list[Agency]:
    """agency.txt; a missing name, URL or timezone is a warning (nothing here depends on it)."""
    name = table.name
    for column in ("agency_name", "agency_url", "agency_timezone"):
        if table.index(column) is None:
            report.warn("missing_column", name, 1, column, "required column missing")
    cols = {
        c: table.index(c)
        for c in ("agency_id", "agency_name", "agency_url", "agency_timezone", "agency_lang")
    }
    cols["agency_phone"] = table.index("agency_phone")

    def get(row: list[str], column: str) -> str:
        i = cols[column]
        return "" if i is None else row[i]

    agencies: list[Agency] = []
    seen: set[str] = set()
    for line, row in table:
        agency_id = get(row, "agency_id")
        if agency_id in seen:
            report.error("duplicate_key", name, line, "agency_id", f"duplicate {agency_id!r}")
            continue
        seen.add(agency_id)
        for column in ("agency_name", "agency_url", "agency_timezone"):
            if cols[column] is not None and not get(row, column):
                report.warn("missing_value", name, line, column, "required value is empty")
        agencies.append(
            Agency(
                agency_id=agency_id,
                name=get(row, "agency_name"),
                url=get(row, "agency_url"),
                timezone=get(row, "agency_timezone"),
                lang=get(row, "agency_lang"),
                phone=get(row, "agency_phone"),
            )
        )
    if len(agencies) > 1 and any(not a.agency_id for a in agencies):
        report.error(
            "missing_value", name, None, "agency_id", "several agencies need an agency_id each"
        )
    timezones = {a.timezone for a in agencies if a.timezone}
    if len(timezones) > 1:
        report.error(
            "inconsistent_timezone",
            name,
            None,
            "agency_timezone",
            f"agencies of one feed must share a timezone, not {sorted(timezones)}",
        )
    return agencies


def read_calendar(table: Table, report: Report) -> dict[str, Service]:
    """calendar.txt: weekly patterns. A missing column raises `GtfsError`."""
    name = table.name
    i_service, *i_days, i_start, i_end = (table.require(c) for c in CALENDAR_COLUMNS)
    services: dict[str, Service] = {}
    for line, row in table:
        service_id = row[i_service]
        if not service_id:
            report.error("missing_value", name, line, "service_id", "required value is empty")
            continue
        if service_id in services:
            report.error("duplicate_key", name, line, "service_id", f"duplicate {service_id!r}")
            continue
        days, ok = 0, True
        for bit, (column, i) in enumerate(zip(WEEKDAYS, i_days, strict=True)):
            if row[i] not in ("0", "1"):
                report.error("bad_value", name, line, column, f"must be 0 or 1, not {row[i]!r}")
                ok = False
            elif row[i] == "1":
                days |= 1 << bit
        dates: list[str] = []
        for column, i in (("start_date", i_start), ("end_date", i_end)):
            try:
                dates.append(parse_date(row[i]))
            except ValueError as exc:
                report.error("bad_value", name, line, column, str(exc))
                ok = False
        if ok and dates[1] < dates[0]:
            report.error("bad_value", name, line, "end_date", "earlier than start_date")
            ok = False
        if ok:
            services[service_id] = Service(service_id, days, dates[0], dates[1])
    return services


def read_calendar_dates(table: Table, report: Report) -> list[tuple[str, str, int]]:
    """calendar_dates.txt: (service_id, date, exception_type) with 1 = added, 2 = removed."""
    name = table.name
    i_service, i_date, i_kind = (table.require(c) for c in CALENDAR_DATES_COLUMNS)
    out: list[tuple[str, str, int]] = []
    seen: set[tuple[str, str]] = set()
    for line, row in table:
        service_id, date, kind = row[i_service], row[i_date], row[i_kind]
        if not service_id:
            report.error("missing_value", name, line, "service_id", "required value is empty")
            continue
        try:
            parse_date(date)
        except ValueError as exc:
            report.error("bad_value", name, line, "date", str(exc))
            continue
        if kind not in ("1", "2"):
            report.error("bad_value", name, line, "exception_type", f"must be 1 or 2: {kind!r}")
            continue
        if (service_id, date) in seen:
            report.error(
                "duplicate_key", name, line, "date", f"{service_id!r} on {date} given twice"
            )
            continue
        seen.add((service_id, date))
        out.append((service_id, date, int(kind)))
    return out


def _first_error(report: Report) -> None:
    if report.errors:
        raise report.errors[0].as_error()


def parse_services(calendar: str | None, calendar_dates: str | None) -> ServiceCalendar:
    """The service calendar from the texts of calendar.txt and/or calendar_dates.txt.

    Raises `GtfsError` for the first problem found.
    """
    report = Report()
    services: dict[str, Service] = {}
    dates: list[tuple[str, str, int]] = []
    if calendar is not None:
        table = Table("calendar.txt", calendar.splitlines(keepends=True), CALENDAR_COLUMNS)
        services = read_calendar(table, report)
    if calendar_dates is not None:
        table = Table(
            "calendar_dates.txt", calendar_dates.splitlines(keepends=True), CALENDAR_DATES_COLUMNS
        )
        dates = read_calendar_dates(table, report)
    _first_error(report)
    return ServiceCalendar(services, dates)


def parse_agencies(text: str) -> list[Agency]:
    """The agencies of agency.txt; raises `GtfsError` for the first error (warnings pass)."""
    report = Report()
    agencies = read_agencies(Table("agency.txt", text.splitlines(keepends=True)), report)
    _first_error(report)
    return agencies
