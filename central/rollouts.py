"""Software rollouts at central (issue 16): a release version to buses in waves, halted when
the release proves broken.

`start_rollout` takes a version, targets in central/groups.py's vocabulary ("all", a bus id or
"bus:B", "group:G"), the waves ("1,10%,100%") and `halt_on`, the number of failed buses that
halts it. The targeted buses, sorted by id, are cut into waves (`wave_sizes`: cumulative, each
wave at least one bus, the last reaching every bus); the first wave's buses get
`release=ReleaseRef(...)` in their desired document at once, through the one desired writer
(central/desired.py), which every later document of the bus keeps.

`advance` (run every few seconds by the service's leader: central/service/rollout_task.py)
reads what the buses said, from what central stored: a bus of an assigned wave is *updated*
when it reports `release.running == version` (its reported state) or records `update_ok` for
the version; it *failed* (*refused*) on an `update_failed` (`update_refused`) event for the
version received after it was assigned, or a reported phase failed (refused) with `wanted ==
version` in a reported state that applied the document carrying it. A wave is done when each
of its buses is updated, failed or refused: an offline bus keeps its wave, and so the rollout,
waiting (its retained desired document carries the release; it updates when it returns). Then
the next wave's buses are assigned; after the last, the rollout is done. When failed and
refused buses reach `halt_on`, the rollout halts: no further wave is assigned, the buses not
yet assigned keep their old release, and the service raises one `rollout_halted` alarm.

A new rollout supersedes the running or halted rollouts that share a bus with it (they are
cancelled); `cancel_rollout` stops one (the buses already assigned keep the release). Reading
the store rather than the ingest's messages makes the engine the same on every instance of a
group (central/service/service.py: events are stored by whichever instance got them) and after
a restart or a change of leader.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec

from central.config import CentralConfig
from central.desired import Published, update_desired
from central.errors import CentralError, Refused
from central.groups import expand_targets
from central.releases.repository import list_releases
from central.store import rollouts as db
from central.store.db import CentralStore
from protocols import codec
from protocols.errors import CodecError
from protocols.release import (
    EVENT_UPDATE_FAILED,
    EVENT_UPDATE_OK,
    EVENT_UPDATE_REFUSED,
    parse_version,
    target_name,
)
from protocols.schemas import DesiredState, ReleaseRef, ReportedState

__all__ = [
    "BUS_STATES",
    "ROLLOUT_STATES",
    "Advance",
    "RolloutError",
    "WaveStep",
    "advance",
    "bus_outcome",
    "bus_releases",
    "cancel_rollout",
    "check_release",
    "parse_waves",
    "rollout_status",
    "split_waves",
    "start_rollout",
    "wave_sizes",
]

ROLLOUT_STATES = ("running", "halted", "done", "cancelled")
BUS_STATES = ("pending", "assigned", "updated", "failed", "refused")
SETTLED = frozenset(("updated", "failed", "refused"))
FAILURES = frozenset(("failed", "refused"))
UPDATE_EVENTS = (EVENT_UPDATE_OK, EVENT_UPDATE_FAILED, EVENT_UPDATE_REFUSED)
MAX_WAVES = 20
MAX_DETAIL = 300  # characters of a bus's reason kept per bus


class RolloutError(Refused):
    """A rollout request central will not carry out; the message says why."""


# -- waves (pure) ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WaveStep:
    """One item of a waves spec: a number of buses, or a percentage of them (cumulative)."""

    count: int | None = None
    percent: Fraction | None = None

    def reach(self, n: int) -> int:
        """How many of `n` buses this step reaches (a percentage rounds up)."""
        if self.count is not None:
            return self.count
        assert self.percent is not None
        return math.ceil(self.percent * n / 100)


def parse_waves(spec: str) -> list[WaveStep]:
    """The steps of "1,10%,100%": each a number of buses (1 or more) or a percentage (over 0,
    at most 100), cumulative, so each count and each percentage above the one before; nothing
    after 100%. RolloutError says what is wrong."""
    items = [i.strip() for i in spec.split(",")]
    if not spec.strip() or not all(items):
        raise RolloutError(f"waves {spec!r}: give sizes separated by commas, like 1,10%,100%")
    if len(items) > MAX_WAVES:
        raise RolloutError(f"waves {spec!r}: at most {MAX_WAVES} waves")
    steps: list[WaveStep] = []
    last_count, last_percent = 0, Fraction(0)
    for item in items:
        if steps and steps[-1].percent == 100:
            raise RolloutError(f"waves {spec!r}: 100% is every bus, nothing can come after it")
        if item.endswith("%"):
            try:
                percent = Fraction(item[:-1].strip())
            except (ValueError, ZeroDivisionError):
                raise RolloutError(f"waves {spec!r}: {item!r} is no percentage") from None
            if not 0 < percent <= 100:
                raise RolloutError(f"waves {spec!r}: {item} is not over 0% and at most 100%")
            if percent <= last_percent:
                raise RolloutError(f"waves {spec!r}: waves are cumulative, {item} must be more")
            last_percent = percent
            steps.append(WaveStep(percent=percent))
        else:
            if not item.isdigit() or int(item) < 1:
                raise RolloutError(
                    f"waves {spec!r}: {item!r} is neither a number of buses (1 or more) nor a"
                    " percentage like 10%"
                )
            if int(item) <= last_count:
                raise RolloutError(f"waves {spec!r}: waves are cumulative, {item} must be more")
            last_count = int(item)
            steps.append(WaveStep(count=int(item)))
    return steps


def wave_sizes(steps: Sequence[WaveStep], n: int) -> list[int]:
    """How many buses each wave takes of `n`: cumulative (a step reaches at least one bus more
    than the one before and at most `n`), each wave one bus or more; steps after every bus is
    reached are dropped. RolloutError if the steps do not reach all `n`."""
    if n < 1:
        raise RolloutError("no bus to roll out to")
    sizes: list[int] = []
    done = 0
    for step in steps:
        reach = min(n, max(step.reach(n), done + 1))
        sizes.append(reach - done)
        done = reach
        if done == n:
            return sizes
    raise RolloutError(f"the waves reach {done} of {n} buses: end with 100% (or {n})")


def split_waves(buses: Iterable[str], sizes: Sequence[int]) -> list[list[str]]:
    """The buses, sorted by id, cut into waves of `sizes` (which add up to their number)."""
    ordered = sorted(set(buses))
    assert sum(sizes) == len(ordered), "wave sizes cover every bus"
    out: list[list[str]] = []
    start = 0
    for size in sizes:
        out.append(ordered[start : start + size])
        start += size
    return out


def bus_outcome(
    version: str,
    desired: int,
    reported: ReportedState | None,
    events: Iterable[tuple[str, dict[str, Any]]],
) -> tuple[str, str] | None:
    """Where an assigned bus stands now: ("updated" | "failed" | "refused", why), or None while
    it works on it. `events` are its update events (kind, data) received since it was assigned,
    in order: the first about `version` decides; then its reported state (`desired`: the
    desired document version that first carried the release to it)."""
    for kind, data in events:
        if data.get("version") != version:
            continue
        reason = str(data.get("reason") or "")[:MAX_DETAIL]
        if kind == EVENT_UPDATE_OK:
            return "updated", ""
        if kind == EVENT_UPDATE_FAILED:
            return "failed", reason or "update failed"
        if kind == EVENT_UPDATE_REFUSED:
            return "refused", reason or "update refused"
    release = reported.release if reported is not None else None
    if reported is None or release is None:
        return None
    if release.running == version:
        return "updated", ""
    if release.wanted == version and release.phase in FAILURES and reported.version >= desired:
        return release.phase, (release.error or f"update {release.phase}")[:MAX_DETAIL]
    return None


# -- at central ----------------------------------------------------------------------------------
def check_release(config: CentralConfig | None, version: str) -> None:
    """Refuse a version that is none (RolloutError), and with `release_repo` configured one
    that is not signed into central's release repository (central/releases/repository.py).
    Without a repository every valid version is taken (the bus's TUF client refuses a release
    that is not signed into the repository anyway)."""
    try:
        parse_version(version)
    except CodecError as exc:
        raise RolloutError(str(exc)) from None
    repo = config.release_repo if config is not None else ""
    if not repo:
        return
    try:
        held = [r.version for r in list_releases(Path(repo))]
    except (OSError, CentralError) as exc:  # a missing or broken repository: refused, said why
        raise RolloutError(f"cannot read the release repository {repo}: {exc}") from None
    if version not in held:
        known = ", ".join(held[-5:]) or "none"
        raise RolloutError(
            f"release {version} is not in the release repository (busfleet release add);"
            f" newest there: {known}"
        )


def start_rollout(
    store: CentralStore,
    config: CentralConfig | None,
    version: str,
    targets: Sequence[str],
    *,
    waves: str,
    halt_on: int,
    now: float,
    by: str,
) -> tuple[dict[str, Any], list[str], Published]:
    """Create a rollout and assign its first wave: (its status record, the rollouts it
    superseded, the desired documents to publish). Refused: a bad version, waves or
    halt_on, an unknown group, no bus."""
    version = version.strip()
    check_release(config, version)
    if halt_on < 1:
        raise RolloutError(f"--halt-on {halt_on}: halt after 1 or more failed buses")
    steps = parse_waves(waves)
    given = [t.strip() for t in targets if t.strip()]
    buses = expand_targets(store, given)
    sizes = wave_sizes(steps, len(buses))
    rollout = f"{int(now):x}-{uuid.uuid4().hex[:6]}"
    with store.transaction():
        superseded = db.open_rollouts_of(store, buses)
        for old in superseded:
            db.set_state(store, old, "cancelled", ended=now, reason=f"superseded by {rollout}")
        row = {
            "id": rollout,
            "version": version,
            "targets": codec.encode_json(given),
            "waves": codec.encode_json(sizes),
            "halt_on": halt_on,
            "state": "running",
            "created": now,
            "by": by,
            "halted_reason": "",
        }
        waves_of = split_waves(buses, sizes)
        db.add_rollout(store, row, ((b, i) for i, wave in enumerate(waves_of) for b in wave), now)
        published = _assign_next(store, rollout, version, db.bus_rows(store, rollout), now)
    return (
        _status(store, db.rollout_row(store, rollout) or row, detail=False),
        superseded,
        published,
    )


def cancel_rollout(store: CentralStore, rollout: str, now: float) -> dict[str, Any]:
    """Stop a running or halted rollout: no further wave; assigned buses keep the release."""
    rollout = rollout.strip()
    with store.transaction():
        row = db.rollout_row(store, rollout)
        if row is None:
            raise RolloutError(f"no rollout {rollout!r} (see `busfleet central release status`)")
        if row["state"] not in ("running", "halted"):
            raise RolloutError(f"rollout {rollout} is {row['state']} already")
        db.set_state(store, rollout, "cancelled", ended=now)
        row = db.rollout_row(store, rollout) or row
    return _status(store, row, detail=False)


@dataclass
class Advance:
    """What one `advance` did: desired documents to publish, rollouts that halted (rollout,
    bus for its alarm, why) and cancelled rollouts whose halt alarm may be cleared."""

    published: Published = field(default_factory=dict)
    halted: list[tuple[str, str, str]] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)


def advance(store: CentralStore, now: float) -> Advance:
    """One step of every running rollout (see the module doc), each in its own transaction."""
    out = Advance()
    for rollout in db.running_ids(store):
        with store.transaction():
            row = db.rollout_row(store, rollout)
            if row is None or row["state"] != "running":
                continue  # cancelled meanwhile
            halted = _step(store, row, now, out.published)
        if halted is not None:
            out.halted.append(halted)
    out.cancelled = db.cancelled_with_alarm(store)
    return out


def _step(
    store: CentralStore, row: dict[str, Any], now: float, published: Published
) -> tuple[str, str, str] | None:
    rollout, version = str(row["id"]), str(row["version"])
    buses = db.bus_rows(store, rollout)
    assigned = [b for b in buses if b["state"] == "assigned"]
    if assigned:
        events = _events_by_bus(store, {str(b["bus"]) for b in assigned}, assigned)
        for b in assigned:
            bus = str(b["bus"])
            got = bus_outcome(
                version,
                int(b["desired"]),
                _reported(store, bus),
                [(k, d) for k, d, t in events.get(bus, []) if t >= float(b["since"])],
            )
            if got is not None:
                b["state"], b["detail"] = got
                db.set_bus(store, rollout, bus, got[0], now, got[1])
    failed = [b for b in buses if b["state"] in FAILURES]
    if len(failed) >= int(row["halt_on"]):
        first = failed[0]
        reason = (
            f"{len(failed)} of {len(buses)} buses failed ({row['halt_on']} halt it); "
            f"{first['bus']}: {first['detail']}"
        )[:MAX_DETAIL]
        db.set_state(store, rollout, "halted", ended=now, reason=reason, alarm_bus=first["bus"])
        return rollout, str(first["bus"]), f"rollout {rollout} of {version} halted: {reason}"
    published.update(_assign_next(store, rollout, version, buses, now))
    if all(b["state"] in SETTLED for b in buses):
        db.set_state(store, rollout, "done", ended=now)
    return None


def _assign_next(
    store: CentralStore, rollout: str, version: str, buses: list[dict[str, Any]], now: float
) -> Published:
    """The next wave's buses get the release, once every bus of the waves before is settled."""
    started = [int(b["wave"]) for b in buses if b["state"] != "pending"]
    current = max(started, default=-1)
    if any(b["state"] not in SETTLED for b in buses if int(b["wave"]) <= current):
        return {}
    waiting = [b for b in buses if b["state"] == "pending"]
    if not waiting:
        return {}
    wave = min(int(b["wave"]) for b in waiting)
    ref = ReleaseRef(version=version, target=target_name(version), rollout=rollout)

    def change(doc: DesiredState) -> DesiredState:
        return msgspec.structs.replace(doc, release=ref)

    published: Published = {}
    for b in waiting:
        if int(b["wave"]) != wave:
            continue
        bus = str(b["bus"])
        published[bus] = update_desired(store, bus, change)
        db.set_bus(store, rollout, bus, "assigned", now, desired=published[bus][0])
        b["state"], b["since"], b["desired"] = "assigned", now, published[bus][0]
    return published


def _events_by_bus(
    store: CentralStore, buses: set[str], assigned: list[dict[str, Any]]
) -> dict[str, list[tuple[str, dict[str, Any], float]]]:
    since = min(float(b["since"]) for b in assigned)
    out: dict[str, list[tuple[str, dict[str, Any], float]]] = {}
    for bus, kind, data, received in db.update_events(store, UPDATE_EVENTS, since):
        if bus not in buses:
            continue
        try:
            parsed = codec.decode_json(data)
        except CodecError:
            continue  # stored as the bus sent it: not ours to judge here
        if isinstance(parsed, dict):
            out.setdefault(bus, []).append((kind, parsed, received))
    return out


def _reported(store: CentralStore, bus: str) -> ReportedState | None:
    body = store.reported(bus)
    if body is None:
        return None
    try:
        return codec.decode(ReportedState, body)
    except CodecError:
        return None


# -- reading -------------------------------------------------------------------------------------
def rollout_status(store: CentralStore, rollout: str | None = None) -> list[dict[str, Any]]:
    """Every rollout, oldest first, where it stands; one (with its buses) if `rollout` is
    given. Refused: no such rollout."""
    if rollout is None:
        return [_status(store, row, detail=False) for row in db.rollouts(store)]
    row = db.rollout_row(store, rollout.strip())
    if row is None:
        raise RolloutError(
            f"no rollout {rollout.strip()!r} (see `busfleet central release status`)"
        )
    return [_status(store, row, detail=True)]


def _status(store: CentralStore, row: dict[str, Any], *, detail: bool) -> dict[str, Any]:
    buses = db.bus_rows(store, str(row["id"]))
    sizes = codec.decode_json(str(row["waves"]))
    counts = dict.fromkeys(BUS_STATES, 0)
    for b in buses:
        counts[str(b["state"])] = counts.get(str(b["state"]), 0) + 1
    started = [int(b["wave"]) for b in buses if b["state"] != "pending"]
    record: dict[str, Any] = {
        "id": row["id"],
        "version": row["version"],
        "state": row["state"],
        "wave": max(started, default=-1) + 1,  # 1-based; 0: none assigned
        "waves": len(sizes) if isinstance(sizes, list) else 0,
        "sizes": sizes,
        "buses": len(buses),
        **counts,
        "halt_on": row["halt_on"],
        "halted_reason": row["halted_reason"],
        "targets": codec.decode_json(str(row["targets"])),
        "created": row["created"],
        "ended": row["ended"],
        "by": row["by"],
    }
    if detail:
        record["bus_states"] = [
            {
                "bus": b["bus"],
                "wave": int(b["wave"]) + 1,
                "state": b["state"],
                "since": b["since"],
                "detail": b["detail"],
            }
            for b in buses
        ]
    return record


def bus_releases(store: CentralStore) -> list[dict[str, Any]]:
    """Per bus central knows, by id: the release central wants on it (version, rollout) and
    what it reports (running version, slot, phase, wanted, previous, error)."""
    wanted: dict[str, ReleaseRef | None] = {}
    for bus, body in store.all_desired():
        try:
            wanted[bus] = codec.decode(DesiredState, body).release
        except CodecError:
            wanted[bus] = None
    reported: dict[str, ReportedState | None] = {}
    for bus, body in store.all_reported():
        try:
            reported[bus] = codec.decode(ReportedState, body)
        except CodecError:
            reported[bus] = None
    known = sorted({*wanted, *reported, *(str(b["bus"]) for b in store.buses())})
    out: list[dict[str, Any]] = []
    for bus in known:
        ref = wanted.get(bus)
        rep = reported.get(bus)
        state = rep.release if rep is not None else None
        out.append(
            {
                "bus": bus,
                "running": state.running if state else None,
                "slot": state.slot if state else None,
                "phase": state.phase if state else None,
                "wanted": state.wanted if state else None,
                "previous": state.previous if state else None,
                "error": state.error if state else None,
                "desired": ref.version if ref else None,
                "rollout": ref.rollout if ref else None,
            }
        )
    return out
