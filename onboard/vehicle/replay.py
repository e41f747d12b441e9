"""CAN from a candump log, played at its own pace in a loop (bench tests, demos, debugging).

A backend like the others: `can.channel` is the log's path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from onboard.vehicle.frames import FrameHandler, FrameSource
from protocols.j1939.candump import parse_candump_line

__all__ = ["ReplayFrames"]

log = logging.getLogger("busfleet.onboard.can")


class ReplayFrames(FrameSource):
    """The frames of a candump log, timed as logged, over and over."""

    async def session(self, handle: FrameHandler) -> None:
        path = Path(self.channel)
        text = await asyncio.to_thread(path.read_text)
        frames = [f for f in map(parse_candump_line, text.splitlines()) if f]
        if not frames:
            raise OSError(f"no frames in candump log {path}")
        log.info("can replay of %s: %d frames", path, len(frames))
        while True:
            start, first = time.monotonic(), frames[0][0]
            for t, _iface, can_id, data in frames:
                delay = (t - first) - (time.monotonic() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
                handle(can_id, data, time.time())
            await asyncio.sleep(0.1)
