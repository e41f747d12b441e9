"""The exception tree of `central`: whose mistake it was decides what happens next.

    CentralError
    ├── Refused            the dispatcher asked for something central will not do: a typo,
    │   │                  an unknown trip, a text too long. The text goes back to them; they
    │   │                  fix the request and ask again. Never logged as central's fault.
    │   └── AssignmentError, MessageError, PlaylistError, DiversionError (central's
    │       feature modules), AlarmError (central/fleet)
    ├── CentralFault       central's own trouble while carrying out a good request (a bug, its
    │                      database): logged with the traceback, answered as `failed`.
    ├── CentralRunning     a tool wanted to write the database itself, but a service runs on it
    └── Unavailable        (client side) no broker to reach central through
        └── NoCentral          no central is online
            └── NoAnswer           one was, but did not answer in time

Like h11's LocalProtocolError / RemoteProtocolError: the refusal is the peer's mistake, the
fault is ours. `Refused` is a ValueError too, because a refusal is a bad value and older
callers catch it as one.
"""

from __future__ import annotations

from protocols.schemas import Scalar

__all__ = [
    "CentralError",
    "CentralFault",
    "CentralRunning",
    "NoAnswer",
    "NoCentral",
    "Refused",
    "Unavailable",
]


class CentralError(Exception):
    """Anything central raises on purpose."""


class Refused(CentralError, ValueError):
    """A request central will not carry out; `str(exc)` tells the dispatcher what to fix,
    `result` and `tables` may say more (the issues of a refused GTFS feed, say)."""

    def __init__(
        self,
        message: str,
        *,
        result: dict[str, Scalar] | None = None,
        tables: dict[str, list[dict[str, Scalar]]] | None = None,
    ) -> None:
        super().__init__(message)
        self.result = result or {}
        self.tables = tables or {}


class CentralFault(CentralError):
    """Central failed to carry out a request that was fine (our mistake, not theirs)."""


class CentralRunning(CentralError):
    """A service runs on this database: only it writes there (central/store/claim.py)."""


class Unavailable(CentralError):
    """Central cannot be asked: no broker, or no running central behind it."""


class NoCentral(Unavailable):
    """No central is online: nobody would answer."""


class NoAnswer(NoCentral):
    """A central was online but did not answer in time (it may still carry the request out)."""
