"""`python -m busfleet.broker.embedded PORT`: amqtt on loopback, for the zero-install demo only."""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def serve(port: int) -> None:
    from amqtt.broker import Broker  # optional dependency: the embedded-broker extra

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        await asyncio.Event().wait()
    finally:
        await broker.shutdown()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
