"""The portal's firewall backends by name: the table agent.toml's `portal.firewall` chooses from.

`nftables` enforces the captive portal in the kernel; `null` (development, tests) remembers
what it was told and enforces nothing. Imported by onboard/config.py for the names alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal, Protocol, Self, cast

from onboard.backends import load_backend

if TYPE_CHECKING:
    from onboard.portal.firewall import Firewall
    from onboard.portal.settings import PortalSection

__all__ = ["FIREWALLS", "FirewallName", "open_firewall"]

# The names as a type, for code that spells one; tests/test_backends.py holds it to the keys.
FirewallName = Literal["nftables", "null"]

FIREWALLS: Final[dict[str, tuple[str, str]]] = {
    "nftables": ("onboard.portal.firewall", "NftablesFirewall"),
    "null": ("onboard.portal.firewall", "NullFirewall"),
}


class FirewallBackend(Protocol):
    """A firewall class the table may name: built from the [portal] section."""

    @classmethod
    def from_config(cls, section: PortalSection, blocked: Sequence[str] = ()) -> Self: ...


def open_firewall(section: PortalSection, *, extra_blocked: Sequence[str] = ()) -> Firewall:
    """The firewall `section.firewall` names (BackendError, a ConfigError, if none is);
    FirewallError for settings that cannot make a ruleset."""
    from onboard.portal.firewall import parse_networks

    # Checked whichever backend runs: a setting that is wrong under `null` in development
    # must not first fail on the bus under `nftables`.
    parse_networks(section.walled_garden)
    parse_networks(section.blocked)
    cls = cast(
        "type[FirewallBackend]",
        load_backend("firewall", FIREWALLS, section.firewall, object, key="portal.firewall"),
    )
    return cast("Firewall", cls.from_config(section, extra_blocked))
