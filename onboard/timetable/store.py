"""The timetable versions a bus runs and holds staged, in agent.sqlite (table `timetable`).

Two rows at most: `running` and `staged`, each the `TimetableRef` central published. The
packages themselves are files named by their sha256 (onboard/timetable/runtime.py); this
table is what says which of them runs, so that a restarted bus runs on the same version
(and switches to the staged one at its valid_from) without asking central.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from onboard.store import AgentStore
from protocols.schemas import TimetableRef

__all__ = ["Slot", "TimetableStore"]

Slot = Literal["running", "staged"]
_decoder = msgspec.json.Decoder(TimetableRef)


class TimetableStore:
    """The running and the staged timetable version, kept across restarts."""

    def __init__(self, store: AgentStore) -> None:
        self.store = store
        self.db = store.db

    def load(self, slot: Slot) -> TimetableRef | None:
        row = self.db.execute("SELECT body FROM timetable WHERE slot = ?", (slot,)).fetchone()
        if row is None:
            return None
        try:
            return _decoder.decode(row[0])
        except msgspec.DecodeError:
            return None  # written by another schema: central names it again

    def save(self, slot: Slot, ref: TimetableRef | None) -> None:
        if ref is None:
            self.db.execute("DELETE FROM timetable WHERE slot = ?", (slot,))
            return
        self.db.execute(
            "INSERT INTO timetable (slot, body) VALUES (?, ?)"
            " ON CONFLICT(slot) DO UPDATE SET body = excluded.body",
            (slot, msgspec.json.encode(ref)),
        )

    def promote(self, ref: TimetableRef) -> None:
        """The staged version runs now: both rows change in one transaction."""
        with self.store.transaction():
            self.save("running", ref)
            self.save("staged", None)
