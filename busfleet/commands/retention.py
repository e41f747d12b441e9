"""`busfleet central retention [--dry-run]`: what central's retention would purge, or purge now.

The running service purges on its own schedule (central/service/retention_task.py). This
tool works on the database itself: `--dry-run` only reads it (safe beside a running service);
a purge takes the database's offline claim (central/store/claim.py) and refuses while a
service holds it, and migrates the schema first (an upgrade of a big database does it here,
before the service starts). Either refuses a file that is not central's database, before
opening it as central's store (which would create central's tables in it).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from central.retention import RetentionPolicy


def register_central(
    csub: argparse._SubParsersAction[argparse.ArgumentParser],
    connection_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = csub.add_parser(
        "retention",
        help="show what retention would purge (--dry-run), or purge now",
        description="Central keeps each kind of data for the days its central.toml says "
        "(retention_positions_days, retention_vehicle_days, retention_events_days, "
        "retention_plays_days, retention_feedback_days, retention_portal_stats_days; 0 = "
        "forever). The running service purges on its own schedule. --dry-run lists, per kind, "
        "the rows that would go and their oldest and newest times; without it, the purge runs "
        "now, in small transactions, and only while no central service runs on the database; "
        "it brings the database's schema up to date first (an upgrade's indexes are built "
        "here, not at the service's start: deploy/README.md). A file that is not central's "
        "database is refused and left as it is.",
    )
    connection_args(p)
    p.add_argument("--dry-run", action="store_true", help="show what would go; change nothing")
    p.set_defaults(func=retention_cmd)


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def retention_cmd(args: argparse.Namespace) -> int:
    from busfleet.commands._common import config_from
    from central.config import CentralConfigError
    from central.errors import CentralRunning
    from central.retention import RetentionPolicy
    from central.store.backend import is_postgres_url, is_store_failure
    from central.store.claim import offline_claim
    from central.store.pg_store import is_central_database

    prog = "busfleet central retention"
    try:
        config = config_from(args)
    except CentralConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    where = config.db.rsplit("@", 1)[-1]  # a URL's user and password are not shown
    server = is_postgres_url(config.db)
    if not server and (config.db == ":memory:" or not Path(config.db).is_file()):
        print(f"{prog}: no database at {config.db}", file=sys.stderr)
        return 2
    policy = RetentionPolicy.from_config(config)
    now = time.time()
    try:
        if not is_central_database(config.db):  # before anything could create central's tables
            print(f"{prog}: {where} is not central's database", file=sys.stderr)
            return 2
        if args.dry_run:
            return _show(config.db, policy, now)
        with offline_claim(config.db):
            return _purge(config.db, policy, now, config.retention_batch_rows)
    except sqlite3.DatabaseError as exc:  # not central's database, or a damaged one
        print(f"{prog}: {where}: {exc}", file=sys.stderr)
        return 2
    except CentralRunning:
        print(
            f"{prog}: a central service runs on {where}; it purges on its own schedule"
            f" (every {config.retention_every_s:.0f} s). --dry-run shows what would go.",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:
        if not is_store_failure(exc):  # psycopg's: the server cannot be reached, say
            raise
        print(f"{prog}: {where}: {exc}", file=sys.stderr)
        return 2


def _show(db: str, policy: RetentionPolicy, now: float) -> int:
    from central.retention import plan
    from central.store.pg_store import open_store

    store = open_store(db, migrate=False)  # only reads: a running service may share it
    try:
        expired = {e.kind: e for e in plan(store, policy, now)}
    finally:
        store.close()
    print(f"{'kind':<13} {'kept':>9} {'rows to purge':>13}  {'oldest':<16}  newest")
    for kind, days in policy.days.items():
        e = expired.get(kind)
        if e is None:
            print(f"{kind:<13} {'forever':>9} {0:>13}")
            continue
        kept = f"{days} d"
        print(f"{kind:<13} {kept:>9} {e.rows:>13}  {_when(e.oldest):<16}  {_when(e.newest)}")
    print(f"cutoffs from {_when(now)} UTC; positions are cleared, the other kinds deleted")
    return 0


def _purge(db: str, policy: RetentionPolicy, now: float, batch_rows: int) -> int:
    from central.retention import purge
    from central.store.pg_store import open_store

    store = open_store(db)  # central's (checked): brought up to the schema retention needs
    removed: dict[str, int] = {}
    try:
        for kind, rows in purge(store, policy, now, batch_rows):
            removed[kind] = removed.get(kind, 0) + rows
    finally:
        store.close()
    for kind in policy.days:
        print(f"{kind}: {removed.get(kind, 0)} purged")
    return 0
