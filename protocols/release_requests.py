"""Dispatchers' requests about software releases and rollouts (issue 16): part of
protocols/requests.py's `Request` union, kept here so that module stays small. Pure."""

from __future__ import annotations

from typing import Annotated

import msgspec

from protocols.request_base import Records, RequestBase

__all__ = ["RELEASE_REQUESTS", "BusReleases", "CancelRollout", "RolloutStatus", "StartRollout"]

Name = Annotated[str, msgspec.Meta(max_length=200)]  # as protocols/requests.py's
Target = Annotated[str, msgspec.Meta(max_length=200)]  # "all", a bus id, "bus:B", "group:G"


class StartRollout(RequestBase, tag="start_rollout", frozen=True, kw_only=True):
    """Roll release `version` out to the buses `to` names (targets as PublishTimetable's) in
    `waves` ("1,10%,100%": cumulative counts or percentages), halting when `halt_on` buses
    failed; it supersedes the open rollouts of those buses (central/rollouts.py)."""

    version: Annotated[str, msgspec.Meta(max_length=64)]
    to: Annotated[list[Target], msgspec.Meta(min_length=1, max_length=1000)]
    waves: Annotated[str, msgspec.Meta(max_length=200)] = "1,10%,100%"
    halt_on: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 1


class CancelRollout(RequestBase, tag="cancel_rollout", frozen=True, kw_only=True):
    """Stop a rollout: no further wave; the buses already given the release keep it."""

    rollout: Name


class RolloutStatus(Records, tag="rollout_status", frozen=True, kw_only=True):
    """Where rollouts stand, oldest first (wave k of n, buses per state, why halted); one,
    with each of its buses, if `rollout` is given."""

    rollout: Name | None = None


class BusReleases(Records, tag="bus_releases", frozen=True, kw_only=True):
    """Which bus runs what: per bus the release central wants on it and what it reports
    (running version, slot, update phase)."""


RELEASE_REQUESTS: tuple[type[RequestBase], ...] = (
    StartRollout,
    CancelRollout,
    RolloutStatus,
    BusReleases,
)
