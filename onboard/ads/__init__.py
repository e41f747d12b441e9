"""Ads on the bus: the media cache, resumable verified downloads, the player, proof of play."""

from onboard.ads.player import Player, PlayRecord, Showing
from onboard.ads.runtime import AdsRuntime

__all__ = ["AdsRuntime", "PlayRecord", "Player", "Showing"]
