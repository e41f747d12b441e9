"""Run a service coroutine until it ends or SIGINT/SIGTERM asks it to stop.

A signal cancels the main task, so every `finally` and `async with` in the service runs: the
agent says goodbye on MQTT, SQLite files are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from busfleet.watchdog import supervise


async def _until_signal(coro: Coroutine[Any, Any, Any], healthy: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    # Under systemd (Type=notify): READY=1, then watchdog pings while the event loop runs; a
    # loop that hangs stops pinging and systemd restarts the service; so does one where
    # `healthy()` says false (the agent: its telemetry loop stopped ticking). A no-op elsewhere.
    watchdog = asyncio.create_task(supervise(healthy=healthy), name="watchdog")
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog


def run_service(coro: Coroutine[Any, Any, Any], healthy: Callable[[], bool] = lambda: True) -> None:
    """Run `coro` under the signal handlers and systemd's watchdog (pinged while `healthy()`)."""
    asyncio.run(_until_signal(coro, healthy))
