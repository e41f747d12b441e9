"""The driver terminal's durable state, in agent.sqlite beside the outbox (onboard/store.py).

Two small tables: the messages dispatch sent (kept until the driver acknowledged them, and a
day after), and what the driver sent (canned messages, emergency alarms, acknowledgements) by
their outbox sequence number. Whether central has stored one is not copied here: the outbox's
own `stored` flag says it (set by central's receipt), so the terminal can never claim a record
arrived that is still queued. A sent item whose outbox row is gone was stored: the outbox only
forgets stored history (events and alarms are never dropped by its disk budget).
"""

from __future__ import annotations

from onboard.driver.model import DispatchMessage, Outgoing
from onboard.link.outbox import Outbox

KEEP_S = 24 * 3600.0  # acknowledged messages and delivered items are forgotten after this
MAX_OPEN = 50  # unacknowledged messages kept at most (the oldest go): a bounded screen list


class DriverStore:
    """The tables `driver_messages` and `driver_outgoing` (created by onboard/store.py)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox  # its `stored` flags say what central has (see the docstring)
        self.db = outbox.db

    # -- messages from dispatch ----------------------------------------------------------------
    def add_message(
        self, msg_id: str, text: str, sent: float, received: float, expires: float
    ) -> bool:
        """Keep a message from dispatch; False if the bus has it already (a redelivery)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO driver_messages (id, text, sent, received, expires)"
            " VALUES (?, ?, ?, ?, ?)",
            (msg_id, text, sent, received, expires),
        )
        self.db.execute(
            "DELETE FROM driver_messages WHERE acked IS NULL AND id NOT IN (SELECT id FROM"
            " driver_messages WHERE acked IS NULL ORDER BY received DESC LIMIT ?)",
            (MAX_OPEN,),
        )
        return cur.rowcount > 0

    def acknowledge(self, msg_id: str, t: float) -> bool | None:
        """Mark a message acknowledged at `t`: True if it was open, False if acknowledged
        before, None if the bus has no such message."""
        cur = self.db.execute(
            "UPDATE driver_messages SET acked = ? WHERE id = ? AND acked IS NULL", (t, msg_id)
        )
        if cur.rowcount:
            return True
        row = self.db.execute("SELECT 1 FROM driver_messages WHERE id = ?", (msg_id,)).fetchone()
        return False if row else None

    def messages(self) -> list[DispatchMessage]:
        rows = self.db.execute(
            "SELECT id, text, sent, received, acked FROM driver_messages ORDER BY received"
        ).fetchall()
        return [DispatchMessage(*row) for row in rows]

    # -- what the driver sent ------------------------------------------------------------------
    def add_outgoing(self, seq: int, kind: str, code: str, t: float) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO driver_outgoing (seq, kind, code, t) VALUES (?, ?, ?, ?)",
            (seq, kind, code, t),
        )

    def outgoing(self, since: float) -> list[Outgoing]:
        """Items sent since `since`, plus any older one still waiting for central."""
        rows = self.db.execute(
            "SELECT d.seq, d.kind, d.code, d.t, NOT EXISTS (SELECT 1 FROM outbox o"
            " WHERE o.seq = d.seq AND o.stored = 0) FROM driver_outgoing d"
            " WHERE d.t >= ? OR EXISTS (SELECT 1 FROM outbox o WHERE o.seq = d.seq"
            " AND o.stored = 0) ORDER BY d.seq",
            (since,),
        ).fetchall()
        return [Outgoing(seq, kind, code, t, bool(done)) for seq, kind, code, t, done in rows]

    def forget(self, older_than: float) -> None:
        """Housekeeping: drop acknowledged messages and delivered items older than this."""
        self.db.execute(
            "DELETE FROM driver_messages WHERE acked IS NOT NULL AND acked < ?", (older_than,)
        )
        self.db.execute(
            "DELETE FROM driver_outgoing WHERE t < ? AND NOT EXISTS (SELECT 1 FROM outbox o"
            " WHERE o.seq = driver_outgoing.seq AND o.stored = 0)",
            (older_than,),
        )
