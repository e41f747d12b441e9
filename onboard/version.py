"""The agent's own version: the installed busfleet distribution's, i.e. the release its slot
holds (onboard/update/), as presence, reported state and health reports say it."""

from __future__ import annotations

import functools
from importlib import metadata

UNKNOWN = "0+unknown"  # run from a source tree that was never installed


@functools.cache
def agent_version() -> str:
    try:
        return metadata.version("busfleet")
    except metadata.PackageNotFoundError:
        return UNKNOWN
