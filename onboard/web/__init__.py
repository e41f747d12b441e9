"""The agent's local web sites (the passenger display, the driver terminal): what they share.

Rules of this room: `site.LocalSite` is the one scaffold (bind with backoff, a ticker, security
headers, the live feed's routes); `live.LiveFeed` is the one versioned state streamed to the
pages as Server-Sent Events. A presentation subclasses the site and says its routes, its state
and its page policy; it never binds a port or writes a header loop of its own. Nothing here is
re-exported: both modules load aiohttp, and importing a room's face must not.
"""

__all__: list[str] = []
