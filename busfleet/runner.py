"""Run a service coroutine until it ends or SIGINT/SIGTERM asks it to stop.

A signal cancels the main task, so every `finally` and `async with` in the service runs: the
agent says goodbye on MQTT, SQLite files are closed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


async def _until_signal(coro: Coroutine[Any, Any, Any]) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_service(coro: Coroutine[Any, Any, Any]) -> None:
    asyncio.run(_until_signal(coro))
