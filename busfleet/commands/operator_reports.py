"""`busfleet central report trips|mileage|punctuality|plays|feedback`: the operator reports
(central/operator_reports.py), read from central's database (`--db` or central.toml's `db`:
a SQLite file or a PostgreSQL URL) like `central retention --dry-run`: only reads, beside a
running service (the plays report brings its copy of the play events up to date first).

Registered under `busfleet central report` beside the advertisers' `report plays`
(busfleet/commands/ads.py, which stays as it was): the operator's plays per item are
`report campaigns`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]

# command -> (report kind, help)
REPORTS = {
    "trips": ("trips", "trips planned vs operated (partial, missed, late starts) per day, route"),
    "mileage": ("mileage", "kilometres (odometer) and operating hours per bus and day"),
    "punctuality": ("punctuality", "departures on time per route, stop and hour of day"),
    "campaigns": ("plays", "plays and seconds on screen per item (campaign) and route"),
    "feedback": ("feedback", "the passengers' feedback of the days"),
}


def register(sub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add the operator reports to `busfleet central report`."""
    for command, (kind, help_) in REPORTS.items():
        p = sub.add_parser(
            command,
            help=help_,
            description=f"{help_[0].upper()}{help_[1:]}, from --from to --to (local days of "
            "the imported timetable's timezone), read from central's database. Example: "
            f"`busfleet central report {command} --from 2026-06-01 --to 2026-06-30 "
            "--format csv > june.csv`.",
        )
        connection_args(p)
        p.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
        p.add_argument("--to", dest="last", required=True, help="last day (inclusive)")
        p.add_argument("--format", choices=("csv", "json", "table"), default="table")
        if kind in ("trips", "punctuality", "plays"):
            p.add_argument("--route", help="only this route")
        if kind == "mileage":
            p.add_argument("--bus", help="only this bus")
        p.set_defaults(func=report_cmd, report_kind=kind, report_name=command)


def report_cmd(args: argparse.Namespace) -> int:
    import datetime as dt

    from busfleet.commands._common import config_from
    from central.config import CentralConfigError
    from central.operator_reports import render, report_rows
    from central.store.backend import is_postgres_url, is_store_failure
    from central.store.pg_store import is_central_database, open_store

    prog = f"busfleet central report {args.report_name}"
    try:
        config = config_from(args)
        first, last = dt.date.fromisoformat(args.first), dt.date.fromisoformat(args.last)
    except (CentralConfigError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if last < first:
        print(f"{prog}: --to is before --from", file=sys.stderr)
        return 2
    if (last - first).days > 366:
        print(f"{prog}: a year at most", file=sys.stderr)
        return 2
    where = config.db.rsplit("@", 1)[-1]  # a URL's user and password are not shown
    if not is_postgres_url(config.db) and not Path(config.db).is_file():
        print(f"{prog}: no database at {config.db}", file=sys.stderr)
        return 2
    try:
        if not is_central_database(config.db):
            print(f"{prog}: {where} is not central's database", file=sys.stderr)
            return 2
        store = open_store(config.db, migrate=False)
        try:
            rows = report_rows(
                store,
                args.report_kind,
                first,
                last,
                route=getattr(args, "route", None),
                bus=getattr(args, "bus", None),
            )
        finally:
            store.close()
    except Exception as exc:
        if not is_store_failure(exc):
            raise
        print(f"{prog}: {where}: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(args.report_kind, rows, args.format))
    return 0
