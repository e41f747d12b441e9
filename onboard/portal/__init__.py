"""The passenger Wi-Fi captive portal: OS probes, terms (de/en), sessions, nftables, feedback.

The agent builds it with `build_portal` from agent.toml's [portal] section and runs
`PortalService.run()` as one task of its TaskGroup. Feedback and statistics leave through
callbacks (`on_feedback(category, text)`, `on_stats(counts)`), which the agent turns into
outbox events, so central gets each exactly once.
"""

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
from onboard.portal.server import make_app
from onboard.portal.service import PortalService, build_portal
from onboard.portal.sessions import Limits, SessionTable

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
