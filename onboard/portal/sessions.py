"""The portal's client sessions: a pure state machine over a table of clients, time passed in.

A client is a (MAC, IP) pair: phones randomise their MAC per network and sometimes change IP,
so either alone is a weak key, and a change of either is a new client (expect churn).

    PENDING --accept--> AUTHORISED --idle | expired | volume | logout--> ENDED
       |
       +--prelogin_idle | evicted | logout--> ENDED

Nothing here does I/O or reads a clock: every call takes `now` (seconds on one clock; the
service uses CLOCK_MONOTONIC, which is meaningful within one boot, like the sessions
themselves) and returns the `Change`s it made, for the service to apply to the firewall and
the store. Only the key (an HMAC of MAC and IP with a per-boot salt) leaves this module for
disk; MAC and IP stay in memory (see store.py for the GDPR reasoning).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from onboard.errors import LocalError


class State(StrEnum):
    PENDING = "pending"  # seen by the portal, terms not accepted yet
    AUTHORISED = "authorised"  # accepted: the firewall lets it through
    ENDED = "ended"  # gone from the table


class Event(StrEnum):
    SEEN = "seen"  # a request to the portal
    ACCEPT = "accept"  # the terms were accepted
    ACTIVITY = "activity"  # the firewall counted traffic
    REATTACH = "reattach"  # a restored session's client came back: allow it again
    PRELOGIN_IDLE = "prelogin_idle"
    IDLE = "idle"
    EXPIRED = "expired"  # the hard session limit
    VOLUME = "volume"  # the volume limit
    LOGOUT = "logout"
    EVICTED = "evicted"  # too many pending clients: the oldest goes


P, A, E = State.PENDING, State.AUTHORISED, State.ENDED

# h11-style transition table: anything not listed is a bug in the caller (SessionError).
TRANSITIONS: dict[tuple[State, Event], State] = {
    (P, Event.SEEN): P,
    (P, Event.ACCEPT): A,
    (P, Event.PRELOGIN_IDLE): E,
    (P, Event.EVICTED): E,
    (P, Event.LOGOUT): E,
    (A, Event.SEEN): A,
    (A, Event.ACCEPT): A,
    (A, Event.ACTIVITY): A,
    (A, Event.REATTACH): A,
    (A, Event.IDLE): E,
    (A, Event.EXPIRED): E,
    (A, Event.VOLUME): E,
    (A, Event.LOGOUT): E,
}


class SessionError(LocalError):
    """An event that the session's state does not allow (a bug, not a client's fault)."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"event {event} is not allowed in state {state}")
        self.state = state
        self.event = event


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise SessionError(state, event) from None


@dataclass(frozen=True, slots=True)
class Limits:
    prelogin_idle_s: float = 600.0
    idle_s: float = 1800.0  # <= 0: no idle timeout
    session_s: float = 14400.0  # hard limit from acceptance
    volume_bytes: int = 0  # up + down per session; 0: unlimited
    max_clients: int = 100  # authorised at once
    max_pending: int = 400  # clients that have not accepted yet; the oldest is dropped beyond


@dataclass(frozen=True, slots=True)
class Session:
    key: str
    state: State
    created: float
    last_seen: float
    mac: str | None = None  # in memory only; None for a restored session not seen again yet
    ip: str | None = None
    accepted: float | None = None
    bytes_up: int = 0  # counted since acceptance
    bytes_down: int = 0
    fw_up: int = 0  # the firewall's running counters when last read (they restart with an element)
    fw_down: int = 0

    @property
    def bytes_used(self) -> int:
        return self.bytes_up + self.bytes_down


@dataclass(frozen=True, slots=True)
class Change:
    """One transition: the service allows on PENDING->AUTHORISED and REATTACH, revokes on ENDED."""

    session: Session  # after the change
    before: State
    event: Event
    bytes_up: int = 0  # traffic this change counted (ACTIVITY)
    bytes_down: int = 0


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store keeps of an authorised session: no MAC, no IP."""

    key: str
    accepted: float
    last_seen: float
    bytes_up: int
    bytes_down: int


class SessionTable:
    """Every client the portal knows, keyed by `key_for(mac, ip)`."""

    def __init__(self, limits: Limits, salt: bytes) -> None:
        self.limits = limits
        self._salt = salt
        self._sessions: dict[str, Session] = {}

    def key_for(self, mac: str | None, ip: str) -> str:
        """HMAC-SHA256 of MAC and IP with this boot's salt: stable in a boot, unlinkable after."""
        message = f"{(mac or '').lower()}|{ip}".encode()
        return hmac.new(self._salt, message, hashlib.sha256).hexdigest()[:32]

    # -- queries ----------------------------------------------------------------------------
    def get(self, key: str) -> Session | None:
        return self._sessions.get(key)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def count(self, state: State) -> int:
        return sum(1 for s in self._sessions.values() if s.state is state)

    def is_authorised(self, key: str) -> bool:
        session = self._sessions.get(key)
        return session is not None and session.state is State.AUTHORISED

    def seconds_remaining(self, session: Session, now: float) -> float:
        """Until the hard limit (0 for a client that has not accepted)."""
        if session.accepted is None:
            return 0.0
        return max(0.0, session.accepted + self.limits.session_s - now)

    def bytes_remaining(self, session: Session) -> int | None:
        if not self.limits.volume_bytes:
            return None
        return max(0, self.limits.volume_bytes - session.bytes_used)

    # -- events -----------------------------------------------------------------------------
    def _apply(self, session: Session, event: Event, **changes: object) -> Change:
        state = next_state(session.state, event)
        after = dataclasses.replace(session, state=state, **changes)  # type: ignore[arg-type]
        if state is State.ENDED:
            self._sessions.pop(session.key, None)
        else:
            self._sessions[session.key] = after
        return Change(after, session.state, event)

    def seen(self, mac: str | None, ip: str, now: float) -> tuple[Session, list[Change]]:
        """A request from this client: start a pending session, or keep its session alive."""
        key = self.key_for(mac, ip)
        session = self._sessions.get(key)
        changes: list[Change] = []
        if session is None:
            changes += self._make_room_for_pending()
            session = Session(key=key, state=State.PENDING, created=now, last_seen=now)
            self._sessions[key] = dataclasses.replace(session, mac=mac, ip=ip)
            return self._sessions[key], changes
        event = Event.SEEN
        if session.state is State.AUTHORISED and session.mac is None and mac is not None:
            event = Event.REATTACH  # restored after a restart and missing from the firewall
        change = self._apply(session, event, last_seen=now, mac=mac, ip=ip)
        if event is Event.REATTACH:
            changes.append(change)
        return change.session, changes

    def _make_room_for_pending(self) -> list[Change]:
        pending = [s for s in self._sessions.values() if s.state is State.PENDING]
        changes = []
        pending.sort(key=lambda s: s.last_seen)
        while len(pending) >= max(1, self.limits.max_pending):
            changes.append(self._apply(pending.pop(0), Event.EVICTED))
        return changes

    def accept(self, mac: str | None, ip: str, now: float) -> tuple[str, list[Change]]:
        """The client accepted the terms: "accepted", "already" (authorised) or "full"."""
        session, changes = self.seen(mac, ip, now)
        if session.state is State.AUTHORISED:
            return "already", changes
        if self.count(State.AUTHORISED) >= self.limits.max_clients:
            return "full", changes
        change = self._apply(session, Event.ACCEPT, accepted=now, last_seen=now)
        return "accepted", [*changes, change]

    def logout(self, key: str) -> list[Change]:
        session = self._sessions.get(key)
        return [] if session is None else [self._apply(session, Event.LOGOUT)]

    def counters(self, key: str, fw_up: int, fw_down: int, now: float) -> list[Change]:
        """The firewall's running byte counters of an authorised client: activity and volume."""
        session = self._sessions.get(key)
        if session is None or session.state is not State.AUTHORISED:
            return []
        # A counter below the last reading restarted (the element was added again).
        up = fw_up - session.fw_up if fw_up >= session.fw_up else fw_up
        down = fw_down - session.fw_down if fw_down >= session.fw_down else fw_down
        if up == 0 and down == 0 and (fw_up, fw_down) == (session.fw_up, session.fw_down):
            return []
        change = self._apply(
            session,
            Event.ACTIVITY,
            last_seen=now if up or down else session.last_seen,
            bytes_up=session.bytes_up + up,
            bytes_down=session.bytes_down + down,
            fw_up=fw_up,
            fw_down=fw_down,
        )
        change = dataclasses.replace(change, bytes_up=up, bytes_down=down)
        volume = self.limits.volume_bytes
        if volume and change.session.bytes_used >= volume:
            return [change, self._apply(change.session, Event.VOLUME)]
        return [change]

    def tick(self, now: float) -> list[Change]:
        """End every session whose time is up."""
        lim = self.limits
        changes = []
        for session in list(self._sessions.values()):
            if session.state is State.PENDING:
                if now - session.last_seen >= lim.prelogin_idle_s:
                    changes.append(self._apply(session, Event.PRELOGIN_IDLE))
            elif session.accepted is not None and now - session.accepted >= lim.session_s:
                changes.append(self._apply(session, Event.EXPIRED))
            elif lim.idle_s > 0 and now - session.last_seen >= lim.idle_s:
                changes.append(self._apply(session, Event.IDLE))
        return changes

    # -- restart ----------------------------------------------------------------------------
    def restore(self, stored: Iterable[Stored], now: float) -> None:
        """Authorised sessions from the store, after an agent restart.

        Their clients' MAC and IP are unknown until `attach` (the firewall still lists them)
        or `seen` (they come back to the portal). The restart counts as activity: the agent
        was blind while it was down, and a client should not pay for that.
        """
        for s in stored:
            self._sessions[s.key] = Session(
                key=s.key,
                state=State.AUTHORISED,
                created=s.accepted,
                last_seen=max(s.last_seen, now),
                accepted=s.accepted,
                bytes_up=s.bytes_up,
                bytes_down=s.bytes_down,
            )

    def attach(self, mac: str, ip: str, fw_up: int = 0, fw_down: int = 0) -> Session | None:
        """Give a restored session its client back (the firewall still allowed it)."""
        session = self._sessions.get(self.key_for(mac, ip))
        if session is None or session.state is not State.AUTHORISED:
            return None
        after = dataclasses.replace(session, mac=mac, ip=ip, fw_up=fw_up, fw_down=fw_down)
        self._sessions[session.key] = after
        return after


def stored(session: Session) -> Stored:
    """The part of an authorised session that may go to disk."""
    assert session.accepted is not None, "only authorised sessions are stored"
    return Stored(
        key=session.key,
        accepted=session.accepted,
        last_seen=session.last_seen,
        bytes_up=session.bytes_up,
        bytes_down=session.bytes_down,
    )
