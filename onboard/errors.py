"""The exception tree of the onboard agent: our mistakes apart from the world's.

h11 tells `LocalProtocolError` (we broke the protocol) from `RemoteProtocolError` (the peer
did); python-can's can/exceptions.py keeps its tree in its docstring. Ours::

    AgentError                     anything the agent raises on purpose
    ├── LocalError                 ours: a bug or a wrong setting; retrying will not help
    │   ├── ConfigError            agent.toml missing, unreadable or invalid (path, key)
    │   │   └── BackendError       a backend name not in its table, or its library missing
    │   └── SessionError           a portal session event its state does not allow (a bug)
    └── RemoteError                theirs: a device, daemon or server; a reconnect may help
        ├── DeviceError            hardware and its daemons
        │   ├── GpsdError          gpsd refused us, hung up or sent garbage
        │   ├── CanBusError        the CAN interface failed (wraps python-can's CanError)
        │   └── FirewallError      nft refused a change or could not be read (detail)
        └── DownloadError          a media download stopped (network, server)
            └── MediaCorrupt       bytes that do not hash to the media's sha256

A reconnect loop (onboard/backoff.py) retries `RemoteError`s and OSError; a `LocalError`
stops the part and is logged as the bug it is. Foreign exceptions are wrapped with
`raise ... from` where they cross into our code, so callers catch ours. Subclasses live with
their room (GpsdError in onboard/gps/gpsd.py, ...) and derive from these.
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "BackendError",
    "ConfigError",
    "DeviceError",
    "LocalError",
    "RemoteError",
]


class AgentError(Exception):
    """Something the agent cannot work around by itself."""


class LocalError(AgentError):
    """Our side is wrong: a bug or a setting; retrying the same thing will fail the same way."""


class RemoteError(AgentError):
    """The other side failed: a device, a daemon, a server. A later attempt may succeed."""


class DeviceError(RemoteError):
    """A piece of the bus's hardware, or the daemon in front of it, failed."""


class ConfigError(LocalError):
    """The agent's configuration file is missing, unreadable or invalid."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class BackendError(ConfigError, LookupError):
    """A backend that is not in its table (`name`, `known`), or whose library is missing."""

    def __init__(
        self,
        kind: str,
        name: str,
        known: tuple[str, ...],
        reason: str = "",
        *,
        key: str | None = None,
    ) -> None:
        what = reason or f"unknown (one of {', '.join(known)})"
        super().__init__(f"{key or kind} {name!r}: {what}", key=key)
        self.kind = kind
        self.name = name
        self.known = known


class UpdateError(AgentError):
    """A software update could not go ahead (onboard/update/)."""


class ReleaseRefused(UpdateError):
    """A release that must not run: unsigned, tampered (wrong hash or length), expired or
    rolled-back metadata, an unknown target, a version not newer than the running one, a bad
    manifest; the message says which in plain words.

    `lasting`: the release itself is bad (its bytes, its version, its manifest), so the bus
    never fetches that version again. Not lasting: the repository cannot be trusted now
    (expired or badly signed metadata, a rollback, a target not listed yet) — a central
    down past its timestamp's day, a bus clock ahead, an attack in progress — so the bus
    refuses now, reports it, and looks again later: the same release may be good then."""

    def __init__(self, message: str, *, lasting: bool = True) -> None:
        super().__init__(message)
        self.lasting = lasting


class FetchFailed(UpdateError):
    """A release could not be fetched now (network, server down): try again later."""
