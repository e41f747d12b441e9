"""Ads on the bus: the media cache, resumable verified downloads, the player, proof of play.

Rules of this room: `player` decides what plays (pure, from protocols/ads); `cache` is the
media on disk, its directory its index (no table in agent.sqlite); `download` and `runtime`
do the network I/O; proof of play leaves as outbox events through the agent. The face
re-exports the player's models eagerly and the runtime (aiohttp) lazily.
"""

from typing import TYPE_CHECKING

from onboard.ads.player import Player, PlayRecord, Showing
from onboard.lazy import lazy_exports

if TYPE_CHECKING:
    from onboard.ads.runtime import AdsRuntime

__all__ = ["AdsRuntime", "PlayRecord", "Player", "Showing"]

__getattr__ = lazy_exports(__name__, {"AdsRuntime": "onboard.ads.runtime"})
