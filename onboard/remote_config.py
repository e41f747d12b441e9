"""Remote configuration: agent settings that central sets in the desired document (issue 14).

The desired document's `config` names agent.toml keys ("telemetry.send_every_s": 5). Each key
is judged here by the agent's own rules, not a second list of them: its form and the keys that
never come over the air (protocols/config_keys.py, shared with central), then the key and its
value by onboard/config.py exactly as loading agent.toml would (the section and key exist, the
type, the bounds of `RANGES`, the backend choices, the cross-key checks). A refused key keeps
its last good value and is reported with the reason (`ReportedState.config_refused`); the
others are the bus's remote configuration, kept in agent.sqlite (table `remote_config`) and
laid over agent.toml at every start, so the bus keeps its last good configuration through a
restart, a power cut, or a night without central.

How a change takes effect, per key (`LIVE`): the keys a running part reads afresh (or that a
small setter hands to its part) apply at once; every other key waits for the next safe moment,
when no trip is running (the journey runtime knows), and the agent restarts cleanly through
the same path as central's `restart` command (systemd runs it again; the new agent starts
on agent.toml plus the kept configuration). Until then the old value runs, and the reported
state says so: `ReportedState.config` is the *running* value of every key central set (now or
before, still in force), not an echo of the desired document, and no forbidden key is in it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from onboard.config import AgentConfig, build_config
from onboard.errors import ConfigError
from onboard.gps.quality import GpsQuality
from onboard.journey.runtime import JourneyRuntime
from onboard.link.mqtt import Link
from onboard.link.outbox import Outbox
from onboard.link.upkeep import OutboxUpkeep
from onboard.portal.service import PortalService, portal_limits
from onboard.store import AgentStore
from onboard.telemetry import Telemetry
from protocols.config_keys import ConfigValue, forbidden, refusal
from protocols.schemas import ReportedState, Scalar

if TYPE_CHECKING:  # the display's server loads aiohttp; the rules here need only its type
    from onboard.display.server import Display
    from onboard.driver.server import DriverTerminal

__all__ = ["LIVE", "RemoteConfig", "flat", "judge", "trip_running"]

log = logging.getLogger("busfleet.onboard.remote_config")

SAFE_POLL_S = 5.0  # how often a pending restart looks whether the trip has ended
MAX_REPORTED_TEXT = 200  # characters of a refused key or reason in the reported state


class Parts(Protocol):
    """The agent's parts a live change reaches (onboard/agent.py's `Agent`)."""

    config: AgentConfig
    link: Link
    telemetry: Telemetry
    upkeep: OutboxUpkeep
    outbox: Outbox
    quality: GpsQuality
    portal: PortalService | None
    display: Display | None
    driver: DriverTerminal | None


Applier = Callable[[Parts, AgentConfig], None]


def _read_afresh(parts: Parts, config: AgentConfig) -> None:
    """The link reads [telemetry] from its config at each batch; `apply` hands it the new one."""


def _interval(parts: Parts, config: AgentConfig) -> None:
    parts.telemetry.interval_s = config.telemetry.interval_s


def _outbox_budget(parts: Parts, config: AgentConfig) -> None:
    parts.outbox.budget_bytes = int(config.outbox.budget_mb * 1_000_000)


def _history(parts: Parts, config: AgentConfig) -> None:
    parts.upkeep.history_s = config.outbox.history_h * 3600


def _gps_limits(parts: Parts, config: AgentConfig) -> None:
    g = config.gps
    parts.quality.limits = dataclasses.replace(
        parts.quality.limits,
        stale_after_s=g.stale_after_s,
        max_hdop=g.max_hdop,
        max_speed_mps=g.max_speed_mps,
        dead_reckon_max_s=g.dead_reckon_max_s,
    )


def _portal_limits(parts: Parts, config: AgentConfig) -> None:
    service = parts.portal
    if service is None:
        return  # no portal on this bus: the value waits in the configuration
    limits = portal_limits(config.portal)
    service.settings = dataclasses.replace(service.settings, limits=limits)
    if service.portal is not None:  # running: its terms page and its session table
        service.portal.settings = service.settings
        service.portal.table.limits = limits


def _display_language(parts: Parts, config: AgentConfig) -> None:
    if parts.display is not None:  # no display on this bus: the value waits in the configuration
        parts.display.set_language(config.display.language, config.display.cycle_s)
    if parts.driver is not None:  # the driver's terminal speaks the displays' language
        parts.driver.set_language(config.display.language)


# The keys that change while the agent runs, and how; every other key waits for a restart.
LIVE: dict[str, Applier] = {
    "telemetry.interval_s": _interval,
    "telemetry.send_every_s": _read_afresh,
    "telemetry.batch_max": _read_afresh,
    "telemetry.backfill_after_s": _read_afresh,
    "telemetry.codec": _read_afresh,
    "outbox.budget_mb": _outbox_budget,
    "outbox.history_h": _history,
    "gps.stale_after_s": _gps_limits,
    "gps.max_hdop": _gps_limits,
    "gps.max_speed_mps": _gps_limits,
    "gps.dead_reckon_max_s": _gps_limits,
    "portal.max_clients": _portal_limits,
    "portal.prelogin_idle_s": _portal_limits,
    "portal.idle_s": _portal_limits,
    "portal.session_s": _portal_limits,
    "portal.volume_mb": _portal_limits,
    "display.language": _display_language,
    "display.cycle_s": _display_language,
}


def flat(config: AgentConfig) -> dict[str, ConfigValue]:
    """Every key of the configuration by its TOML name: {"telemetry.send_every_s": 10.0, ...}."""
    raw = dataclasses.asdict(config)
    return {f"{s}.{k}": v for s, table in raw.items() for k, v in table.items()}


def _overlay(base: AgentConfig, values: Mapping[str, ConfigValue]) -> AgentConfig:
    """`base` with `values` set, checked as agent.toml is (ConfigError names the key)."""
    raw: dict[str, dict[str, Any]] = dataclasses.asdict(base)
    for key, value in values.items():
        section, _, name = key.partition(".")
        raw[section][name] = value
    return build_config(raw, "remote configuration")


def judge(
    base: AgentConfig, wanted: Mapping[str, object]
) -> tuple[dict[str, ConfigValue], dict[str, str]]:
    """The keys of `wanted` the agent accepts over `base` (its agent.toml), and the refused
    ones with the reason; together the accepted ones pass every check of agent.toml."""
    known = flat(base)
    accepted: dict[str, ConfigValue] = {}
    refused: dict[str, str] = {}
    for key, value in sorted(wanted.items()):
        if why := refusal(key, value):
            refused[key] = why
        elif key not in known:
            refused[key] = "no such key in the agent's configuration"
        else:
            assert isinstance(value, str | int | float | bool)  # refusal() said it is
            try:
                _overlay(base, {key: value})
            except ConfigError as exc:
                refused[key] = str(exc)
            else:
                accepted[key] = value
    while accepted:  # rules between keys (the portal's blocked list and the broker, say)
        try:
            _overlay(base, accepted)
            break
        except ConfigError as exc:
            culprit = exc.key if exc.key in accepted else max(accepted)
            assert culprit is not None
            refused[culprit] = f"{exc} (with the other keys central set)"
            del accepted[culprit]
    return accepted, refused


def trip_running(journey: JourneyRuntime | None) -> bool:
    """A trip has begun and not finished: no restart now (passengers watch its display)."""
    state = journey.state if journey is not None else None
    return state is not None and not state.finished and state.dist_m is not None


class RemoteConfig:
    """The remote configuration of one bus: kept, judged, applied live or at a restart."""

    def __init__(
        self,
        store: AgentStore,
        base: AgentConfig,
        on_event: Callable[[str, dict[str, Scalar]], object] | None = None,
    ) -> None:
        self.db = store.db
        self.base = base  # agent.toml, as the agent was started with it
        self.on_event = on_event
        # agent.toml may have changed since a key was kept: the kept keys are judged again.
        self.overrides, dropped = judge(base, self._load())
        for key, why in dropped.items():
            log.warning("kept remote setting %s dropped: %s", key, why)
        self.running = _overlay(base, self.overrides)  # what the parts are built with
        self.refused: dict[str, str] = dict(dropped)
        self.desired: set[str] = set()  # the keys the desired document names
        self.pending: set[str] = set()  # changed, waiting for the restart
        self.restart_wanted = asyncio.Event()

    # -- keeping -------------------------------------------------------------------------------
    def _load(self) -> dict[str, object]:
        row = self.db.execute("SELECT body FROM remote_config WHERE id = 1").fetchone()
        if row is None:
            return {}
        try:
            kept = msgspec.json.decode(row[0])
        except msgspec.DecodeError:
            log.warning("the kept remote configuration is unreadable: agent.toml only")
            return {}
        return kept if isinstance(kept, dict) else {}

    def _save(self, overrides: dict[str, ConfigValue]) -> None:
        self.db.execute(
            "INSERT INTO remote_config (id, body) VALUES (1, ?)"
            " ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            (msgspec.json.encode(overrides),),
        )

    # -- applying ------------------------------------------------------------------------------
    def offer(self, wanted: Mapping[str, object], parts: Parts) -> set[str]:
        """The desired document's `config`: judge it, keep what is accepted, apply the live
        keys to `parts` now and schedule a restart for the others; returns the keys applied
        live."""
        accepted, refused = judge(self.base, wanted)
        # A refused key keeps its last good value; a key central no longer names goes.
        kept = {k: v for k, v in self.overrides.items() if k in refused}
        overrides = {**kept, **accepted}
        if overrides != self.overrides:
            self._save(overrides)
            self.overrides = overrides
        for key, why in refused.items():
            if self.refused.get(key) != why:
                log.warning("remote setting %s refused: %s", key, why)
        self.refused, self.desired = refused, set(wanted)
        target, now = flat(_overlay(self.base, overrides)), flat(self.running)
        changed = {k for k, v in target.items() if now[k] != v}
        live = {k for k in changed if k in LIVE}
        if live:
            self.running = _overlay(self.running, {k: target[k] for k in live})
            self.apply(parts, live)
            log.info("remote settings applied live: %s", ", ".join(sorted(live)))
        self.pending = changed - live
        if self.pending:
            log.info("remote settings wait for a restart: %s", ", ".join(sorted(self.pending)))
            self.restart_wanted.set()
        else:
            self.restart_wanted.clear()
        return live

    def apply(self, parts: Parts, keys: set[str]) -> None:
        """Hand the running configuration to the parts whose `keys` changed."""
        parts.config = self.running
        parts.link.config = self.running  # its [mqtt] never changes live: forbidden or restart
        for applier in {LIVE[k] for k in keys}:
            applier(parts, self.running)

    async def run(
        self,
        restart: asyncio.Event,
        trip_running: Callable[[], bool],
        *,
        poll_s: float = SAFE_POLL_S,
    ) -> None:
        """Restart the agent (`restart`) once settings wait for it and no trip is running."""
        while True:
            await self.restart_wanted.wait()
            if not self.pending:
                self.restart_wanted.clear()
                continue
            if trip_running():
                await asyncio.sleep(poll_s)
                continue
            keys = ", ".join(sorted(self.pending))
            log.info("restarting to apply remote settings: %s", keys)
            if self.on_event is not None:
                self.on_event("config_restart", {"keys": keys[:MAX_REPORTED_TEXT]})
            restart.set()
            return

    # -- reporting -----------------------------------------------------------------------------
    def reported(self, state: ReportedState) -> ReportedState:
        """`state` with the running value of each key central set (now or before) and the
        refused keys with their reasons."""
        running = flat(self.running)
        keys = (self.desired | set(self.overrides) | self.pending) & set(running)
        config = {k: running[k] for k in sorted(keys) if forbidden(k) is None}
        refused = {
            k[:MAX_REPORTED_TEXT]: why[:MAX_REPORTED_TEXT] for k, why in self.refused.items()
        }
        return msgspec.structs.replace(state, config=config, config_refused=refused)
