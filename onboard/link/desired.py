"""Desired state in, applied state out: validate, apply atomically, keep the last good one.

The bus never runs a half-applied document: a new desired state is validated in full and
then replaces the current one in a single SQLite write. An invalid document leaves the bus on
its last good state and is reported back (rejected_version + error) so central can see it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from onboard.store import AgentStore
from protocols import codec
from protocols.errors import CodecError
from protocols.schemas import DesiredState, ReportedState


@dataclass(frozen=True, slots=True)
class Outcome:
    applied: DesiredState | None  # what the bus runs now (None: nothing assigned yet)
    rejected_version: int | None = None
    error: str | None = None


def evaluate(current: DesiredState | None, payload: bytes, bus_id: str) -> Outcome:
    """Decide what to run given the current document and a new payload (pure)."""
    try:
        desired = codec.decode(DesiredState, payload)
    except CodecError as exc:
        return Outcome(current, rejected_version=_version_hint(payload), error=str(exc))
    if desired.bus != bus_id:
        return Outcome(current, desired.version, f"document is for bus {desired.bus!r}")
    if current is not None and desired.version < current.version:
        return Outcome(
            current, desired.version, f"version {desired.version} is older than {current.version}"
        )
    return Outcome(desired)


def _version_hint(payload: bytes) -> int | None:
    try:
        version = msgspec.json.decode(payload, type=dict[str, object]).get("version")
    except msgspec.DecodeError:
        return None
    return version if isinstance(version, int) else None


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
