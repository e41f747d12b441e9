"""Advertising, pure: playlists and their schedules, and where a bus is for geo-targeting.

playlist    the playlist document (items, schedules, targets), versioned and validated
schedule    which item plays now: dayparts, weekdays, caps, share of hour, priority
fence       geo-fences with hysteresis
"""

from protocols.ads.playlist import Item, Playlist, Schedule, Target

__all__ = ["Item", "Playlist", "Schedule", "Target"]
