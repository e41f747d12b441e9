"""The child process of bench/agent_inputs.py: the agent's local clients, as on a bus.

- `--phones` passengers' phones on the portal (onboard/portal/), each from its own loopback
  address (127.0.1.N) so the portal sees distinct clients. A phone joins the Wi-Fi as a phone
  does: the OS probe (intercepted: a foreign Host), the terms page, accept (the form's hidden
  fields sent back, CSRF token included, as a browser does), the status page and
  the RFC 8908 API (REFERENCE.md section 4). Then, as long as it is on board, it polls: every
  0..2 x `--think-s` seconds the status page (where the bus is, the next stops, the city's
  announcements), the captive API (the OS checks its session) and the OS probe; once a ride it
  opens the feedback form and sends one (DESIGN.md: "accept the terms, get online, see where
  the bus is, read city announcements, send feedback"). Joins are spread over `--join-s`.
- the passenger display and the driver terminal open on their live feeds (Server-Sent
  Events: /display/events, /driver/events), as their kiosk browsers are all day.

Runs until SIGTERM, then prints one JSON line: requests by outcome, SSE messages received.

    .venv/bin/python bench/agent_clients.py --portal-port P --display-port D --driver-port R
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import html
import json
import random
import re
import signal
import sys
from typing import Any

import aiohttp

PROBE = ("connectivitycheck.gstatic.com", "/generate_204")
# A form's hidden fields, sent back as a browser does: the portal's CSRF token ("csrf") on the
# terms page, the feedback token ("token") on the feedback form, the language.
HIDDEN = re.compile(rb'<input type="hidden" name="([^"]+)" value="([^"]*)"')


class Tally:
    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()


async def phone(n: int, base: str, args: argparse.Namespace, tally: Tally) -> None:
    await asyncio.sleep(random.uniform(0, args.join_s))
    connector = aiohttp.TCPConnector(local_addr=(f"127.0.1.{n}", 0), limit=2)
    timeout = aiohttp.ClientTimeout(total=10)
    origin = {"Origin": base.rstrip("/")}
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:

        async def request(method: str, path: str, **kw: Any) -> bytes:
            try:
                async with session.request(method, path, allow_redirects=False, **kw) as r:
                    body = await r.read()
                    tally.counts["ok" if r.status < 400 else f"http_{r.status}"] += 1
                    return body
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.counts[f"error_{type(exc).__name__}"] += 1
                return b""

        def hidden_of(page: bytes) -> dict[str, str]:
            return {k.decode(): html.unescape(v.decode()) for k, v in HIDDEN.findall(page)}

        await request("GET", PROBE[1], headers={"Host": PROBE[0]})
        terms = await request("GET", "/")
        form = {"accept": "yes", "lang": "de", **hidden_of(terms)}
        await request("POST", "/accept", data=form, headers=origin)
        await request("GET", "/status")
        await request("GET", "/api/captive", headers={"Accept": "application/captive+json"})
        rounds = 0
        feedback_at = random.randint(3, 12)
        while True:
            await asyncio.sleep(random.uniform(0, 2 * args.think_s))
            rounds += 1
            await request("GET", "/status")
            await request("GET", "/api/captive", headers={"Accept": "application/captive+json"})
            await request("GET", PROBE[1], headers={"Host": PROBE[0]})
            if rounds == feedback_at:
                page = await request("GET", "/feedback")
                text = {"category": "wifi", "text": f"phone {n}: works", "lang": "de"}
                await request("POST", "/feedback", data={**text, **hidden_of(page)}, headers=origin)


async def live_feed(url: str, name: str, tally: Tally) -> None:
    """A kiosk browser on a live feed: reconnects if the stream ends, counts its messages."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(url) as r:
                    tally.counts[f"{name}_streams"] += 1
                    async for line in r.content:
                        if line.startswith(b"data:"):
                            tally.counts[f"{name}_messages"] += 1
            except (aiohttp.ClientError, TimeoutError):
                tally.counts[f"{name}_errors"] += 1
            await asyncio.sleep(1.0)


async def main(args: argparse.Namespace) -> dict[str, int]:
    tally = Tally()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    portal = f"http://127.0.0.1:{args.portal_port}/"
    tasks = [
        asyncio.create_task(phone(n, portal, args, tally), name=f"phone-{n}")
        for n in range(1, args.phones + 1)
    ]
    tasks += [
        asyncio.create_task(
            live_feed(f"http://127.0.0.1:{args.display_port}/display/events", "display", tally)
        ),
        asyncio.create_task(
            live_feed(f"http://127.0.0.1:{args.driver_port}/driver/events", "driver", tally)
        ),
    ]
    print("READY", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return dict(tally.counts)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--portal-port", type=int, required=True)
    p.add_argument("--display-port", type=int, required=True)
    p.add_argument("--driver-port", type=int, required=True)
    p.add_argument("--phones", type=int, default=50)
    p.add_argument("--think-s", type=float, default=5.0, help="mean pause between polls (5)")
    p.add_argument("--join-s", type=float, default=5.0, help="joins spread over this (5)")
    result = asyncio.run(main(p.parse_args()))
    print(json.dumps(result), flush=True)
    sys.exit(0)
