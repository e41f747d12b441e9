"""The passenger Wi-Fi captive portal: OS probes, terms (de/en), sessions, nftables, feedback.

The agent builds it with `build_portal` from agent.toml's [portal] section and runs
`PortalService.run()` as one task of its TaskGroup. Feedback and statistics leave through
callbacks (`on_feedback(category, text)`, `on_stats(counts)`), which the agent turns into
outbox events, so central gets each exactly once.

Rules of this room: `sessions` is a pure state table (h11 style); `core` joins it to the
firewall and the store; the firewall is a backend picked from `firewalls.FIREWALLS`; sessions
live in agent.sqlite (onboard/store.py), hashed, never a MAC or an IP. `journey` turns the
journey core's state into the portal's content. The face re-exports the models eagerly and
the server (`make_app`, `PortalService`, `build_portal`) lazily: importing a model never
loads aiohttp.
"""

from typing import TYPE_CHECKING

from onboard.lazy import lazy_exports
from onboard.portal.content import (
    AdSlot,
    Announcement,
    ContentProvider,
    PortalContent,
    Stop,
    content_from_state,
)
from onboard.portal.core import Portal, Settings
from onboard.portal.firewall import (
    Client,
    Firewall,
    FirewallError,
    NftablesFirewall,
    NullFirewall,
    Ruleset,
    render_ruleset,
)
from onboard.portal.sessions import Limits, SessionTable

if TYPE_CHECKING:
    from onboard.portal.server import make_app
    from onboard.portal.service import PortalService, build_portal

__all__ = [
    "AdSlot",
    "Announcement",
    "Client",
    "ContentProvider",
    "Firewall",
    "FirewallError",
    "Limits",
    "NftablesFirewall",
    "NullFirewall",
    "Portal",
    "PortalContent",
    "PortalService",
    "Ruleset",
    "SessionTable",
    "Settings",
    "Stop",
    "build_portal",
    "content_from_state",
    "make_app",
    "render_ruleset",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "make_app": "onboard.portal.server",
        "PortalService": "onboard.portal.service",
        "build_portal": "onboard.portal.service",
    },
)
