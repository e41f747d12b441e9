"""The link stops when it is told to: a cancellation that meets the broker's reply is honoured.

aiomqtt waits for a PUBACK (or SUBACK) in asyncio.wait_for; on Python 3.11 a cancellation
that arrives in the same turn of the loop as the reply is swallowed (CPython gh-86296), and a
link task that then waits for its next change never ends: the agent hung at SIGTERM and at a
restart (seen in tests/test_remote_config.py). onboard/link/mqtt.py's `unswallowed` wraps
every such call of the link.
"""

from __future__ import annotations

import asyncio
import sys

from onboard.link.mqtt import unswallowed


async def _reply_and_cancel_together(wrap: bool) -> bool:
    """Whether the link's task was cancelled (ended) by one cancellation at its reply."""
    reply = asyncio.Event()  # the PUBACK, as aiomqtt's publish waits for it
    changed = asyncio.Event()  # the next reported state: never comes

    async def publish() -> None:
        await asyncio.wait_for(reply.wait(), timeout=10)

    async def send_reported() -> None:  # the shape of Link._send_reported
        while True:
            await (unswallowed(publish()) if wrap else publish())
            await changed.wait()

    task = asyncio.create_task(send_reported())
    await asyncio.sleep(0)  # it waits for the reply
    reply.set()  # the reply arrives ...
    task.cancel()  # ... and the stop, in the same turn of the loop
    await asyncio.wait([task], timeout=2)
    stopped = task.cancelled()
    task.cancel()  # again, for the bare call: the old tests' workaround
    await asyncio.gather(task, return_exceptions=True)
    return stopped


def test_a_cancellation_that_meets_the_reply_stops_the_task() -> None:
    assert asyncio.run(_reply_and_cancel_together(wrap=True))


def test_the_race_is_real_on_this_python_without_the_wrapper() -> None:
    """What `unswallowed` is for: on Python 3.11 the bare call swallows the cancellation and
    the task waits on (on 3.12 and later it stops either way)."""
    stopped = asyncio.run(_reply_and_cancel_together(wrap=False))
    assert stopped == (sys.version_info >= (3, 12))
