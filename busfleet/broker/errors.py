"""The exception tree of busfleet's broker tools: what went wrong setting up the link.

BrokerError        a broker could not be started or configured
  TlsError         openssl failed making certificates
  ProvisionError   a bus or user could not be provisioned (a bad name, a locked file)
"""

from __future__ import annotations

__all__ = ["BrokerError", "ProvisionError", "TlsError"]


class BrokerError(RuntimeError):
    """The broker could not be started or configured."""


class TlsError(BrokerError):
    """openssl is missing or refused to make a certificate; `detail` holds its stderr."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message if not detail else f"{message}: {detail.strip()}")
        self.detail = detail


class ProvisionError(BrokerError):
    """A bus or service user could not be provisioned."""
