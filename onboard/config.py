"""The agent's TOML configuration: typed sections with documented defaults.

deploy/agent.example.toml shows every key with its default; keep the two in step (a test
loads the example and compares it with these defaults).
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from onboard.audio.settings import AudioSection
from onboard.errors import ConfigError
from onboard.gps.backends import GPS_SOURCES
from onboard.gps.settings import GpsSection
from onboard.health.settings import HealthSection
from onboard.logs.settings import LogsSection
from onboard.portal.firewall import FirewallError, parse_networks
from onboard.portal.firewalls import FIREWALLS
from onboard.portal.settings import PortalSection
from onboard.update.settings import UpdateSection
from onboard.vehicle.backends import CAN_INTERFACES
from protocols.topics import valid_bus_id


@dataclass(frozen=True, slots=True)
class BusSection:
    id: str = "bus-001"
    data_dir: str = "/var/lib/busfleet"  # outbox and applied state (SQLite)


@dataclass(frozen=True, slots=True)
class MqttSection:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""  # empty: the bus id
    password_file: str = ""  # empty: no password (development brokers only)
    ca_file: str = ""  # TLS with this CA; required unless insecure_dev_broker
    # Development brokers only: connect without TLS (the bus password and all data in clear).
    insecure_dev_broker: bool = False
    keepalive_s: int = 30
    protocol: int = 5  # MQTT 5; 4 means 3.1.1 (for brokers without MQTT 5)
    backoff_max_s: float = 30.0  # reconnect backoff grows to this, with jitter


@dataclass(frozen=True, slots=True)
class CanSection:
    # onboard/vehicle/backends.py: socketcan (a real bus) | virtual (tests, simulator) |
    # replay (a candump log), or none
    interface: str = "socketcan"
    channel: str = "can0"  # for replay: the candump log file
    bitrate: int = 250_000  # bus-FMS


@dataclass(frozen=True, slots=True)
class TelemetrySection:
    interval_s: float = 1.0  # one record per interval
    send_every_s: float = (
        10.0  # telemetry waits up to this long to share a message (cellular bytes)
    )
    codec: str = "compact"  # compact (binary, ~16 bytes a record) | json (for debugging)
    batch_max: int = 50  # records per MQTT message
    backfill_after_s: float = 10.0  # records older than this when sent are marked backfill


@dataclass(frozen=True, slots=True)
class OutboxSection:
    budget_mb: float = 200.0  # disk budget of the outbox; see onboard/link/outbox.py for the policy
    history_h: float = 48.0  # stored records are kept this long to resend on request


@dataclass(frozen=True, slots=True)
class AdsSection:
    enabled: bool = True  # play the playlist central assigns (onboard/ads/)
    budget_mb: float = 2000.0  # disk budget of the media cache; unused media go first
    lookahead_days: int = 2  # a playlist is switched to only with the media for these days
    media_url: str = ""  # empty: the playlist's (central.media_url); set: this one wins
    record_location: bool = False  # coordinates in proof-of-play records
    max_accuracy_m: float = 50.0  # fixes less accurate than this do not move geo-fences


@dataclass(frozen=True, slots=True)
class DisplaySection:
    enabled: bool = True  # the passenger display pages (onboard/display/)
    host: str = "127.0.0.1"  # the screens' network: the kiosk browsers connect here
    port: int = 8090  # 0: any free port; not 8080, central's HTTP default on a dev machine
    # The languages the pages show, "de", "en" or "de,en" (alternating every cycle_s seconds);
    # a kiosk URL's ?lang= and ?cycle= win. Live when central sets them (remote configuration).
    language: str = "de"
    cycle_s: float = 8.0


DISPLAY_LANGUAGES = ("de", "en")  # the languages the display pages have texts for


def display_languages(text: str) -> tuple[str, ...]:
    """The languages of a `display.language` value ("de,en" -> ("de", "en")); ValueError says
    what is wrong with it."""
    langs = tuple(part.strip().lower() for part in text.split(","))
    unknown = [lang for lang in langs if lang not in DISPLAY_LANGUAGES]
    if unknown or not langs:
        raise ValueError(f"{text!r} is not a list of display languages: give de, en or de,en")
    if len(set(langs)) != len(langs):
        raise ValueError(f"{text!r} names a language twice")
    return langs


@dataclass(frozen=True, slots=True)
class DriverSection:
    enabled: bool = True  # the driver's terminal in the cab (onboard/driver/)
    host: str = "127.0.0.1"  # the cab screen's network; never the passengers'
    port: int = 8091  # 0: any free port


@dataclass(frozen=True, slots=True)
class JourneySection:
    # The timetable comes from central (the desired document's `timetable`, onboard/timetable/).
    # `gtfs` is only a bootstrap: a GTFS feed (zip or folder) tracked while the bus has never
    # received a central timetable; once one runs, it is ignored. Empty and none from central:
    # no journey tracking (a `no_timetable` event says so at start).
    gtfs: str = ""
    timetable_budget_mb: float = 500.0  # disk for the running and the staged timetable package
    timetable_url: str = ""  # empty: the document's url; set: {timetable_url}/{sha256}.zip wins


@dataclass(frozen=True, slots=True)
class AgentConfig:
    bus: BusSection = field(default_factory=BusSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    gps: GpsSection = field(default_factory=GpsSection)
    can: CanSection = field(default_factory=CanSection)
    telemetry: TelemetrySection = field(default_factory=TelemetrySection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    ads: AdsSection = field(default_factory=AdsSection)
    display: DisplaySection = field(default_factory=DisplaySection)
    driver: DriverSection = field(default_factory=DriverSection)
    portal: PortalSection = field(default_factory=PortalSection)
    journey: JourneySection = field(default_factory=JourneySection)
    update: UpdateSection = field(default_factory=UpdateSection)
    health: HealthSection = field(default_factory=HealthSection)
    logs: LogsSection = field(default_factory=LogsSection)
    audio: AudioSection = field(default_factory=AudioSection)

    @property
    def mqtt_username(self) -> str:
        return self.mqtt.username or self.bus.id


S = TypeVar("S")

DAY = 86_400.0
# Bounds of the numeric keys, inclusive: what the agent can run with. Checked when agent.toml is
# loaded and when central sets a key remotely (onboard/remote_config.py): one set of rules.
RANGES: dict[str, tuple[float, float]] = {
    "mqtt.port": (1, 65_535),
    "mqtt.keepalive_s": (1, 65_535),  # MQTT's own limit
    "mqtt.protocol": (4, 5),
    "mqtt.backoff_max_s": (0.01, DAY),
    "gps.baud": (1, 10_000_000),
    "gps.gpsd_port": (1, 65_535),
    "gps.stale_after_s": (0.01, DAY),
    "gps.max_hdop": (0.1, 1_000),
    "gps.max_speed_mps": (0.1, 1_000),
    "gps.dead_reckon_max_s": (0, DAY),
    "can.bitrate": (1, 10_000_000),
    "telemetry.interval_s": (0.01, 3_600),
    "telemetry.send_every_s": (0, 3_600),
    "telemetry.batch_max": (1, 10_000),
    "telemetry.backfill_after_s": (0, DAY),
    "outbox.budget_mb": (0.001, 10_000_000),
    "outbox.history_h": (0, 24 * 366),
    "ads.budget_mb": (0.001, 10_000_000),
    "ads.lookahead_days": (0, 366),
    "ads.max_accuracy_m": (0, 100_000),
    "display.port": (0, 65_535),
    "display.cycle_s": (2, 120),  # what the pages accept as ?cycle=
    "driver.port": (0, 65_535),
    "portal.listen_port": (0, 65_535),
    "portal.tls_port": (0, 65_535),
    "portal.prelogin_idle_s": (0, 7 * DAY),
    "portal.idle_s": (0, 7 * DAY),
    "portal.session_s": (0, 7 * DAY),
    "portal.rate_kbytes": (0, 10_000_000),
    "portal.volume_mb": (0, 10_000_000),
    "portal.max_clients": (1, 100_000),
    "portal.feedback_per_hour": (0, 10_000),
    "portal.sync_every_s": (0.01, 3_600),
    "portal.stats_every_s": (0.01, DAY),
    "update.health_timeout_s": (10, DAY),
    "health.interval_s": (1, DAY),
    "health.data_budget_mb": (0, 10_000_000),
    "logs.max_mb": (0.1, 100_000),
}


def _section(cls: type[S], raw: Any, name: str, path: str) -> S:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table", path=path, key=name)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}", path=path, key=f"{name}.{key}")
        default = getattr(cls(), key)
        expected = float if isinstance(default, float) else type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        # true is an int to Python, not to agent.toml's reader: `max_clients = true` is refused.
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise ConfigError(
                f"{name}.{key} must be {expected.__name__}, not {type(value).__name__}",
                path=path,
                key=f"{name}.{key}",
            )
        bounds = RANGES.get(f"{name}.{key}")
        if bounds and not isinstance(value, bool) and not bounds[0] <= value <= bounds[1]:
            low, high = (f"{b:g}" for b in bounds)
            raise ConfigError(
                f"{name}.{key} = {value!r} is out of range ({low} to {high})",
                path=path,
                key=f"{name}.{key}",
            )
        values[key] = value
    return cls(**values)


def parse_config(text: str, path: str = "<string>") -> AgentConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", path=path) from exc
    return build_config(raw, path)


def build_config(raw: dict[str, Any], path: str = "<config>") -> AgentConfig:
    """The AgentConfig of agent.toml's tables (as tomllib reads them), checked as at load."""
    unknown = set(raw) - {f.name for f in fields(AgentConfig)}
    if unknown:
        raise ConfigError(f"unknown section [{sorted(unknown)[0]}]", path=path)
    config = AgentConfig(
        bus=_section(BusSection, raw.get("bus"), "bus", path),
        mqtt=_section(MqttSection, raw.get("mqtt"), "mqtt", path),
        gps=_section(GpsSection, raw.get("gps"), "gps", path),
        can=_section(CanSection, raw.get("can"), "can", path),
        telemetry=_section(TelemetrySection, raw.get("telemetry"), "telemetry", path),
        outbox=_section(OutboxSection, raw.get("outbox"), "outbox", path),
        ads=_section(AdsSection, raw.get("ads"), "ads", path),
        display=_section(DisplaySection, raw.get("display"), "display", path),
        driver=_section(DriverSection, raw.get("driver"), "driver", path),
        portal=_section(PortalSection, raw.get("portal"), "portal", path),
        journey=_section(JourneySection, raw.get("journey"), "journey", path),
        update=_section(UpdateSection, raw.get("update"), "update", path),
        health=_section(HealthSection, raw.get("health"), "health", path),
        logs=_section(LogsSection, raw.get("logs"), "logs", path),
        audio=_section(AudioSection, raw.get("audio"), "audio", path),
    )
    if not valid_bus_id(config.bus.id):
        raise ConfigError(
            f"bus.id {config.bus.id!r} is not a valid bus id", path=path, key="bus.id"
        )
    if config.telemetry.codec not in ("compact", "json"):
        raise ConfigError(
            f"telemetry.codec {config.telemetry.codec!r} unknown", path=path, key="telemetry.codec"
        )
    # Backend choices are the keys of each room's table (onboard/backends.py).
    _choice(config.gps.source, GPS_SOURCES, "gps.source", path)
    _choice(config.can.interface, CAN_INTERFACES, "can.interface", path)
    _choice(config.portal.firewall, tuple(FIREWALLS), "portal.firewall", path)
    try:
        display_languages(config.display.language)
    except ValueError as exc:
        raise ConfigError(f"display.language {exc}", path=path, key="display.language") from None
    check_link_security(config, path)
    check_portal_blocking(config, path)
    return config


def check_link_security(config: AgentConfig, path: str = "<config>") -> None:
    """ConfigError unless the link to city hall is TLS, or explicitly a development broker."""
    m = config.mqtt
    if not m.ca_file and not m.insecure_dev_broker:
        raise ConfigError(
            f"{path}: mqtt.ca_file is empty: the bus would send its password and data in clear."
            " Set mqtt.ca_file to the broker's CA certificate (TLS), or, for a development"
            " broker only, mqtt.insecure_dev_broker = true",
            path=path,
            key="mqtt.ca_file",
        )


def check_portal_blocking(config: AgentConfig, path: str = "<config>") -> None:
    """ConfigError if passengers could reach the broker because it is named, not addressed.

    The portal firewall blocks addresses, not names, and resolving a name once at start would
    block yesterday's address: with the portal on and the broker given by name, its addresses
    must be listed in portal.blocked (checked there like every other address).
    """
    for key in ("blocked", "walled_garden"):
        try:
            parse_networks(getattr(config.portal, key))
        except FirewallError as exc:
            raise ConfigError(
                f"{path}: portal.{key}: {exc} (host names are not resolved: give addresses)",
                path=path,
                key=f"portal.{key}",
            ) from exc
    host = config.mqtt.host
    if not config.portal.enabled or _is_address(host) or host.lower() == "localhost":
        return
    if not config.portal.blocked.strip():
        raise ConfigError(
            f"{path}: mqtt.host {host!r} is a host name, which the portal firewall cannot"
            " block: list the broker's IPv4 addresses in portal.blocked"
            ' (e.g. blocked = "203.0.113.7"), or give mqtt.host as an address',
            path=path,
            key="portal.blocked",
        )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _choice(value: str, choices: tuple[str, ...], key: str, path: str) -> None:
    if value not in choices:
        raise ConfigError(
            f"{key} {value!r} unknown (one of {', '.join(choices)})", path=path, key=key
        )


def load_config(path: str | Path) -> AgentConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", path=str(path)) from exc
    return parse_config(text, str(path))


__all__ = [
    "DISPLAY_LANGUAGES",
    "AgentConfig",
    "ConfigError",
    "GpsSection",
    "PortalSection",
    "build_config",
    "display_languages",
    "load_config",
    "parse_config",
]
