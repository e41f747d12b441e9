"""Aggregate portal statistics for central: counts and volumes, never who.

A snapshot holds numbers only — clients now and at most, sessions started and how they ended,
bytes through the firewall, feedback — summed over the period since the last snapshot.
Nothing identifies a passenger: no keys, no addresses, no times of single sessions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from onboard.portal.sessions import Change, Event, State

StatsSink = Callable[[dict[str, int]], None]

ENDINGS = {
    Event.IDLE: "ended_idle",
    Event.EXPIRED: "ended_expired",
    Event.VOLUME: "ended_volume",
    Event.LOGOUT: "ended_logout",
}


class PortalStats:
    """Counters for one reporting period; `snapshot` returns them and starts a new period."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._clients_max = 0
        self.clients_now = 0

    def count(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    def observe(self, changes: list[Change]) -> None:
        """Count what the session table did."""
        for change in changes:
            if change.before is State.PENDING and change.session.state is State.AUTHORISED:
                self._counts["accepted"] += 1
            elif change.before is State.AUTHORISED and change.event in ENDINGS:
                self._counts[ENDINGS[change.event]] += 1
            self._counts["bytes_up"] += change.bytes_up
            self._counts["bytes_down"] += change.bytes_down

    def clients(self, authorised: int) -> None:
        """The number of authorised clients now."""
        self.clients_now = authorised
        self._clients_max = max(self._clients_max, authorised)

    def snapshot(self) -> dict[str, int]:
        data = {
            "clients": self.clients_now,
            "clients_max": self._clients_max,
            "accepted": 0,
            "ended_idle": 0,
            "ended_expired": 0,
            "ended_volume": 0,
            "ended_logout": 0,
            "refused_full": 0,
            "bytes_up": 0,
            "bytes_down": 0,
            "feedback": 0,
            "feedback_rejected": 0,
            "page_views": 0,
        }
        data.update(self._counts)
        self._counts.clear()
        self._clients_max = self.clients_now
        return data
