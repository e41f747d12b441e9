"""Central's TOML configuration with documented defaults (see deploy/central.example.toml)."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class CentralConfigError(Exception):
    """central.toml is missing, unreadable or invalid."""


@dataclass(frozen=True, slots=True)
class CentralConfig:
    # Fleet history and state: a SQLite file (WAL; the default, nothing to install), or a
    # PostgreSQL server, "postgresql://user@host:port/dbname" (central/store/backend.py), which
    # several `central serve` instances may share. On a server, timetable packages and uploads
    # go beside media_dir unless timetable_dir says where (no database file to put them by).
    db: str = "central.sqlite"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = "central"
    mqtt_password_file: str = ""
    mqtt_ca_file: str = ""
    mqtt_protocol: int = 5  # 4 = MQTT 3.1.1
    # Empty: the MQTT username. deploy/'s broker forces every client id to its username, so
    # there an account is one connection, and each ingest worker needs an account of its own.
    client_id: str = ""
    offline_after_s: float = 30.0  # no message from a bus for this long: offline
    fleet_publish_s: float = 0.5  # how often changed fleet entries go to dashboards
    media_dir: str = "media"  # the ad media library (content-addressed files)
    media_url: str = ""  # where buses download media; empty: http://{http_host}:{http_port}/media
    # Timetable packages (content-addressed zips of published GTFS versions); empty:
    # timetables/ beside the database. Where buses fetch them; empty:
    # http://{http_host}:{http_port}/timetables
    timetable_dir: str = ""
    timetable_url: str = ""
    # The TUF repository of software releases (`busfleet release init`), served read-only at
    # /releases/ by the HTTP server; empty: not served. central re-signs its timestamp.
    release_repo: str = ""
    http_host: str = "127.0.0.1"  # central's HTTP server (GTFS-Realtime): address to bind
    http_port: int = 0  # its port; 0 = no HTTP server
    # Retention (central/retention.py), days per kind; 0 = keep forever. Positions go first:
    # a bus's positions reveal its driver's working day, so they are kept only as long as
    # complaints and incidents are investigated. The telemetry rows (vehicle data) go later.
    retention_positions_days: int = 30
    retention_vehicle_days: int = 90  # 0 or at least retention_positions_days
    retention_events_days: int = 90  # journey, driver, alarm and command events
    retention_plays_days: int = 400  # proof of play: a year's invoices and a month to dispute
    retention_feedback_days: int = 365  # passengers' free text: a year to answer and report on
    retention_portal_stats_days: int = 400  # counts and volumes only, nothing personal
    retention_every_s: float = 3600.0  # purge at most this often (and at start)
    retention_batch_rows: int = 5000  # rows per transaction: the ingest waits at most for one
    alarm_overspeed_kmh: float = 70.0  # faster than this for 5 s raises an overspeed alarm
    alarm_sync_after_s: float = 120.0  # online, not running its desired state this long: alarm
    alarm_timetable_late_s: float = 600.0  # not on its desired timetable this long after valid_from
    # fleet health (central/fleet/health.py): a disk about to fill, a bus that keeps restarting
    health_disk_free_pct: float = 10.0  # less free (of the bus's data budget, else its disk)
    health_disk_free_mb: float = 0.0  # fewer MB free; 0: the share alone
    health_restarts: int = 3  # this many agent starts ...
    health_restart_window_s: float = 600.0  # ... within this long: a `restarting` alarm
    # Alarm notifications by e-mail and webhook (central/notify/rules.py): a TOML file of rules,
    # relative to the working directory; empty: none (deploy/notify.example.toml).
    notify_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The client id to connect with, and the name of this worker's presence."""
        return self.client_id or self.mqtt_username or "central"


def parse_central_config(text: str, path: str = "<string>") -> CentralConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CentralConfigError(f"{path}: {exc}") from exc
    section = raw.get("central", {})
    known = {f.name for f in fields(CentralConfig)} - {"extra"}
    unknown = set(section) - known
    if unknown:
        raise CentralConfigError(f"{path}: unknown key central.{sorted(unknown)[0]}")
    defaults = CentralConfig()
    values: dict[str, Any] = {}
    for key, value in section.items():
        want = type(getattr(defaults, key))
        if isinstance(value, bool) and want is not bool:  # TOML's true is no number (Python: 1)
            raise CentralConfigError(f"{path}: central.{key} must be {want.__name__}, not {value}")
        if want is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, want):
            raise CentralConfigError(f"{path}: central.{key} must be {want.__name__}")
        if want is float and not math.isfinite(value):  # asyncio.sleep(nan) returns at once
            raise CentralConfigError(f"{path}: central.{key} must be a finite number, not {value}")
        values[key] = value
    config = CentralConfig(**values)
    _check_retention(config, path)
    return config


# Bounds of the retention task's settings: a purge far more often than a minute only costs the
# ingest, far less often than weekly lets a backlog grow; a batch of 100 rows barely advances, one
# of 100,000 holds the write lock (and the ingest) for seconds.
RETENTION_EVERY_S = (60.0, 7 * 86_400.0)
RETENTION_BATCH_ROWS = (100, 100_000)
RETENTION_MAX_DAYS = 36_500  # a century; 0 keeps a kind forever


def _check_retention(config: CentralConfig, path: str) -> None:
    """Retention settings that cannot be honoured are refused, not bent."""
    for f in fields(CentralConfig):
        value = getattr(config, f.name)
        if not f.name.startswith("retention_"):
            continue
        key = f"{path}: central.{f.name}"
        if f.name.endswith("_days") and not 0 <= value <= RETENTION_MAX_DAYS:
            raise CentralConfigError(
                f"{key} must be between 0 (keep forever) and {RETENTION_MAX_DAYS} days"
            )
    for name, (low, high) in (
        ("retention_every_s", RETENTION_EVERY_S),
        ("retention_batch_rows", RETENTION_BATCH_ROWS),
    ):
        if not low <= getattr(config, name) <= high:
            raise CentralConfigError(f"{path}: central.{name} must be between {low:g} and {high:g}")
    positions, vehicle = config.retention_positions_days, config.retention_vehicle_days
    if vehicle and not 0 < positions <= vehicle:
        raise CentralConfigError(
            f"{path}: central.retention_positions_days must be between 1 and"
            f" retention_vehicle_days ({vehicle}): a telemetry row holds both, and the"
            " positions go with the row at the latest"
        )


def load_central_config(path: str | Path) -> CentralConfig:
    try:
        return parse_central_config(Path(path).read_text(), str(path))
    except OSError as exc:
        raise CentralConfigError(f"cannot read {path}: {exc.strerror}") from exc
