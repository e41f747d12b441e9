"""What the agent sends is fitted into its schema's bounds before it is stored or published.

Central refuses a payload with any number out of its bound (protocols/schemas.py), and a
record it refuses never gets a receipt: the bus would send it again forever. So each record,
event and reported state goes through `protocols.bounds.fit` first: a value out of bounds (a
garbage NMEA speed with a good checksum, a delay computed against the wrong day) is left out
and counted, the rest of the document goes. Logged at most once a minute.
"""

from __future__ import annotations

import logging
import time
from typing import TypeVar

import msgspec

from protocols.bounds import fit
from protocols.errors import CodecError

log = logging.getLogger("busfleet.onboard.bounds")

T = TypeVar("T", bound=msgspec.Struct)
LOG_EVERY_S = 60.0


class Bounds:
    def __init__(self) -> None:
        self.dropped = 0  # values left out of what the agent sent
        self.unfit = 0  # documents that could not be fitted: not sent at all
        self._logged = 0.0

    def fit(self, doc: T) -> T | None:
        """`doc` within its schema's bounds; None (counted) if its required values are not."""
        try:
            fitted, dropped = fit(doc)
        except CodecError as exc:
            self.unfit += 1
            self._warn(f"not sent, out of bounds: {exc}")
            return None
        if dropped:
            self.dropped += len(dropped)
            self._warn(f"{type(doc).__name__}: left out of bounds: {', '.join(dropped)}")
        return fitted

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY_S or self._logged == 0.0:
            self._logged = now
            log.warning("%s (%d values, %d documents so far)", text, self.dropped, self.unfit)
