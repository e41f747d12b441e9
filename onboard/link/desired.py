"""Desired state in, applied state out: validate, apply atomically, keep the last good one.

The bus never runs a half-applied document: a new desired state is validated in full and
then replaces the current one in a single SQLite write. An invalid document leaves the bus on
its last good state and is reported back (rejected_version + error) so central can see it.

Whatever the payload (nesting 100,000 deep, a version of 2^63, a float of 1e400), `evaluate`
returns an Outcome and never raises: the document is retained at the broker, so a payload
that killed the agent would kill it again at every start.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import msgspec

from onboard.store import AgentStore
from protocols import codec
from protocols.errors import CodecError
from protocols.schemas import DesiredState, ReportedState

# Integers the bus keeps or sends back must fit SQLite (2^63) and every JSON reader of
# central's (doubles): 2^53 is the bound for the version and every other integer in a document.
MAX_INT = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Outcome:
    applied: DesiredState | None  # what the bus runs now (None: nothing assigned yet)
    rejected_version: int | None = None
    error: str | None = None


def evaluate(current: DesiredState | None, payload: bytes, bus_id: str) -> Outcome:
    """Decide what to run given the current document and a new payload (pure; never raises)."""
    try:
        desired = codec.decode(DesiredState, payload)
    except CodecError as exc:
        return Outcome(current, rejected_version=_version_hint(payload), error=str(exc))
    except RecursionError:  # msgspec skips unknown fields recursively: nesting too deep
        return Outcome(current, error="DesiredState: nested too deep")
    version = desired.version if _fits(desired.version) else None
    if version is None or version < 0:
        return Outcome(current, error=f"version {_short(desired.version)} is out of range")
    if problem := _out_of_range(desired):
        return Outcome(current, version, problem)
    if desired.bus != bus_id:
        return Outcome(current, version, f"document is for bus {desired.bus!r}")
    if current is not None and version < current.version:
        return Outcome(current, version, f"version {version} is older than {current.version}")
    return Outcome(desired)


def _fits(value: int) -> bool:
    return -MAX_INT <= value <= MAX_INT


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _out_of_range(desired: DesiredState) -> str | None:
    """The first integer beyond ±2^53 or non-finite float anywhere in the document, or None.

    The document is typed, hence shallow (no recursive field): a loop over a work list."""
    todo: list[object] = [msgspec.to_builtins(desired)]
    while todo:
        value = todo.pop()
        if isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not _fits(value):
            return f"integer {_short(value)} is out of range"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"number {value} is not finite"
    return None


def _version_hint(payload: bytes) -> int | None:
    """The version of a refused document, if it has one worth reporting (within ±2^53)."""
    try:
        version = msgspec.json.decode(payload, type=_Versioned).version
    except (msgspec.DecodeError, RecursionError):
        return None
    return version if isinstance(version, int) and _fits(version) else None


class _Versioned(msgspec.Struct):
    version: object = None


def reported(outcome: Outcome, bus_id: str, counters: dict[str, int]) -> ReportedState:
    applied = outcome.applied
    return ReportedState(
        bus=bus_id,
        version=applied.version if applied else 0,
        t=time.time(),
        assignment=applied.assignment if applied else None,
        playlist=applied.playlist if applied else None,
        messages=[m.id for m in applied.messages] if applied else [],
        config=dict(applied.config) if applied else {},
        rejected_version=outcome.rejected_version,
        error=outcome.error,
        counters=counters,
    )


class AppliedStore:
    """The applied desired state, kept in agent.sqlite across restarts (table `applied`)."""

    def __init__(self, store: AgentStore) -> None:
        self.db = store.db

    def load(self) -> DesiredState | None:
        row = self.db.execute("SELECT body FROM applied WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            return codec.decode(DesiredState, row[0])
        except CodecError:
            return None  # written by an older schema: wait for central to resend

    def save(self, state: DesiredState) -> None:
        self.db.execute(
            "INSERT INTO applied (id, version, body) VALUES (1, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET version = excluded.version, body = excluded.body",
            (state.version, codec.encode(state)),
        )
