"""Remote configuration at central: agent settings in the buses' desired documents (issue 14).

`busfleet central config set BUS|--group G|--all KEY=VALUE... [--unset KEY]` and `config show BUS`
arrive as
`SetConfig` / `ShowConfig` requests (protocols/requests.py); the handlers here are entries
of the dispatcher's table (central/service/dispatch.py). Central checks what it can know: the
form of a key ("section.key") and of a value (a scalar within sane bounds), and the keys that
never go over the air (protocols/config_keys.py, the list the bus checks too). It does not
know the agent's schema: the bus judges each value and reports the refused ones with the
reason, and the value it runs for each key (`ReportedState.config`, `config_refused`), which
`config show` sets beside the desired ones.

`SetConfig` names its buses as the other features name targets (central/groups.py's
`expand_targets`): a bus id, `bus:B`, `group:G` (its buses now) or `all` (every bus central
knows); the reply lists each bus and its new desired version. A request for several buses is
checked whole (settings and targets) before any bus's document is written, and all of them
are written in one transaction: a refusal changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from central.desired import Published, update_desired
from central.errors import Refused
from central.groups import expand_targets
from central.store.db import CentralStore
from protocols import codec, topics
from protocols.config_keys import MAX_KEYS, ConfigValue, refusal
from protocols.errors import ProtocolError
from protocols.requests import RequestBase, SetConfig, ShowConfig
from protocols.schemas import DesiredState, ReportedState, Scalar

__all__ = ["CONFIG_HANDLERS", "SettingsRefused", "config_rows", "set_config"]

Answer = tuple[dict[str, Scalar], dict[str, list[dict[str, Scalar]]]]


class SettingsRefused(Refused):
    """A setting central will not send: a bad key or value, a key never set remotely."""


class Ctx(Protocol):
    """What a handler needs of the dispatcher's context (central/service/dispatch.py's Ctx)."""

    store: CentralStore
    now: float
    desired: Published


def check(values: dict[str, ConfigValue], unset: list[str]) -> None:
    """SettingsRefused naming every key central refuses, with the reason."""
    problems = [f"{key}: {why}" for key, value in values.items() if (why := refusal(key, value))]
    problems += [f"{key}: set and unset at once" for key in unset if key in values]
    if problems:
        raise SettingsRefused("refused: " + "; ".join(sorted(problems)))
    if not values and not unset:
        raise SettingsRefused("give at least one KEY=VALUE or --unset KEY")


def set_config(
    store: CentralStore, bus: str, values: dict[str, ConfigValue], unset: list[str]
) -> tuple[int, bytes]:
    """Store the bus's next desired document with `values` set and `unset` gone from its
    configuration; returns (version, payload) for the service to publish."""
    check(values, unset)

    def change(doc: DesiredState) -> DesiredState:
        config = {k: v for k, v in doc.config.items() if k not in unset}
        config.update(values)
        if len(config) > MAX_KEYS:
            raise SettingsRefused(f"{bus} would have {len(config)} settings: at most {MAX_KEYS}")
        return msgspec.structs.replace(doc, config=config)

    return update_desired(store, bus, change)


def _bus(text: str) -> str:
    try:
        return topics.check_bus_id(text.strip())
    except ProtocolError as exc:
        raise SettingsRefused(str(exc)) from None


def _set(c: Ctx, r: SetConfig) -> Answer:
    values, unset = dict(r.values), list(r.unset)
    check(values, unset)  # before any bus's document is written
    buses = expand_targets(c.store, r.buses)  # GroupError (a Refusal) for a bad target
    if not buses:
        raise SettingsRefused(f"no bus to set: {', '.join(r.buses)} names none (yet)")
    written: Published = {}
    with c.store.transaction():  # every bus's document, or none (one over MAX_KEYS, say)
        for bus in buses:
            written[bus] = set_config(c.store, bus, values, unset)
    c.desired.update(written)
    rows: list[dict[str, Scalar]] = [{"bus": b, "version": c.desired[b][0]} for b in buses]
    result: dict[str, Scalar] = {"buses": len(buses)}
    if len(buses) == 1:
        result.update(bus=buses[0], version=c.desired[buses[0]][0])
    return result, {"buses": rows}


def config_rows(
    desired: DesiredState | None, reported: ReportedState | None
) -> list[dict[str, Scalar]]:
    """One row per setting: desired, running, and its state: running (as desired), pending
    (the bus has not applied it yet, or waits for a restart), refused (with why)."""
    wanted = desired.config if desired else {}
    running = reported.config if reported else {}
    refused = reported.config_refused if reported else {}
    rows: list[dict[str, Scalar]] = []
    for key in sorted(set(wanted) | set(running) | set(refused)):
        if key in refused:
            state = "refused"
        elif key in wanted and key in running and running[key] == wanted[key]:
            state = "running"
        else:
            state = "pending"
        rows.append(
            {
                "key": key,
                "desired": wanted.get(key),
                "running": running.get(key),
                "state": state,
                "reason": refused.get(key, ""),
            }
        )
    return rows


def _show(c: Ctx, r: ShowConfig) -> Answer:
    bus = _bus(r.bus)
    stored = c.store.desired(bus)
    desired = codec.decode(DesiredState, stored[1]) if stored else None
    body = c.store.reported(bus)
    reported = None
    if body is not None:
        try:
            reported = codec.decode(ReportedState, body)
        except ProtocolError:
            reported = None  # stored by an older schema: as if not reported yet
    result: dict[str, Scalar] = {
        "bus": bus,
        "desired_version": desired.version if desired else 0,
        "reported_version": reported.version if reported else None,
        "pending_restart": reported.counters.get("config_pending", 0) if reported else 0,
    }
    return result, {"config": config_rows(desired, reported)}


# Entries of the dispatcher's table (central/service/dispatch.py).
CONFIG_HANDLERS: dict[type[RequestBase], Callable[[Ctx, Any], Answer]] = {
    SetConfig: _set,
    ShowConfig: _show,
}
