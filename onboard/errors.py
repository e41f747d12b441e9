"""The exception tree of the onboard agent."""

from __future__ import annotations


class AgentError(Exception):
    """Something the agent cannot work around by itself."""


class ConfigError(AgentError):
    """The agent's configuration file is missing, unreadable or invalid."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key
