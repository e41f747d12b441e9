"""Passenger portal under load: N phones at once, against the portal and a bare aiohttp server.

Each phone is an aiohttp client bound to its own loopback address (127.0.1.N), so the portal
sees N distinct clients. A phone does what a phone does when it joins the bus Wi-Fi, over and
over: the OS probe (intercepted: a foreign Host, a new connection), the portal page, accept
(once), the status page, the RFC 8908 API, the probe again; between requests it pauses a
random 0..2x `--think-ms` (a person reading). The portal runs with the null firewall (the
nftables side costs one `nft` call per acceptance and is not in the request path).

The baseline, in the same run and with the same phones and requests: a bare aiohttp server
whose one handler answers every path with a short text (and, like the portal, closes the
connection of an intercepted probe). Each server runs in a process of its own; the phones are
spread over `--workers` processes of their own. `phones_cpu_pct` is what those took: on a
2-core machine, a figure near 100 means the phones, not the server, set the latency.

Prints figures per server, then as its last line one JSON object with `phones`, `req_per_s`,
`p99_ms`, `bare_req_per_s`, `bare_p99_ms` (and more). Goal: p99 under 50 ms.

    ./run bench portal_load [--phones 100] [--seconds 10] [--think-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBE = ("connectivitycheck.gstatic.com", "/generate_204")
GOAL_P99_MS = 50.0


# -- the servers (child processes) ----------------------------------------------------------
async def serve(kind: str, port: int, data_dir: Path) -> None:
    from aiohttp import web

    if kind == "bare":

        async def hello(request: web.Request) -> web.Response:
            await request.read()
            # Like the portal, close intercepted (foreign Host) connections: same TCP work.
            close = {"Connection": "close"} if request.host == PROBE[0] else None
            return web.Response(text="ok", headers=close)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", hello)
    else:
        from onboard.portal import (
            AdSlot,
            Announcement,
            NullFirewall,
            Portal,
            PortalContent,
            Settings,
            Stop,
            make_app,
        )
        from onboard.portal.sessions import Limits
        from onboard.portal.store import SessionStore

        content = PortalContent(
            line="131",
            destination="Cairns City",
            next_stops=tuple(Stop(f"Stop {i}") for i in range(5)),
            announcements=(Announcement("Umleitung ab Montag", "Diversion from Monday"),),
            ad=AdSlot("Stadtfest", "Samstag auf dem Marktplatz"),
        )
        portal = Portal(
            Settings(public_url="http://127.0.0.1/", limits=Limits(max_clients=10_000)),
            NullFirewall(),
            SessionStore(data_dir / "portal.sqlite"),
            content=lambda: content,
        )
        await portal.start()
        app = make_app(portal)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print("READY", flush=True)
    await asyncio.Event().wait()


# -- the phones (worker processes) ----------------------------------------------------------
async def phone(
    n: int, base: str, think_s: float, window: tuple[float, float], out: dict[str, list[float]]
) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(local_addr=(f"127.0.1.{n}", 0), limit=2)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:

        async def request(method: str, path: str, **kw: object) -> None:
            start = time.perf_counter()
            at = time.time()
            try:
                async with session.request(method, path, allow_redirects=False, **kw) as r:  # type: ignore[arg-type]
                    await r.read()
                    ok = r.status < 500
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if window[0] <= at < window[1]:  # started inside the measured window
                out["latencies"].append(time.perf_counter() - start)
                if not ok:
                    out["errors"].append(1)
            await asyncio.sleep(random.uniform(0, 2 * think_s))

        accepted = False
        while time.time() < window[1]:
            await request("GET", PROBE[1], headers={"Host": PROBE[0]})
            await request("GET", "/")
            if not accepted:
                await request("POST", "/accept", data={"accept": "yes", "lang": "de"})
                accepted = True
            await request("GET", "/status")
            await request("GET", "/api/captive")
            await request("GET", PROBE[1], headers={"Host": PROBE[0]})


async def phones(
    first: int, count: int, base: str, think_s: float, window: tuple[float, float]
) -> None:
    out: dict[str, list[float]] = {"latencies": [], "errors": []}
    await asyncio.gather(
        *(phone(n, base, think_s, window, out) for n in range(first, first + count))
    )
    print(json.dumps({"latencies": out["latencies"], "errors": len(out["errors"])}), flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    latencies: list[float]
    errors: int
    server_cpu_s: float
    phones_cpu_s: float
    seconds: float


def run_round(kind: str, args: argparse.Namespace, data_dir: Path, seconds: float) -> Round:
    port = free_port()
    me = [sys.executable, __file__]
    server = subprocess.Popen(
        [*me, "--serve", kind, "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"READY":
            raise SystemExit(f"the {kind} server did not start")
        start = time.time() + args.warmup
        end = start + seconds
        share = -(-args.phones // args.workers)
        for first in range(1, args.phones + 1, share):
            count = min(share, args.phones + 1 - first)
            argv = [*me, "--worker", f"{first},{count},{start},{end}", "--port", str(port)]
            argv += ["--think-ms", str(args.think_ms)]
            workers.append(subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=REPO))
        time.sleep(max(0.0, start - time.time()))
        cpu_start = cpu_seconds(server.pid)
        phones_cpu_start = sum(cpu_seconds(w.pid) for w in workers)
        time.sleep(max(0.0, end - time.time()))
        cpu = cpu_seconds(server.pid) - cpu_start
        phones_cpu = sum(cpu_seconds(w.pid) for w in workers) - phones_cpu_start
        latencies: list[float] = []
        errors = 0
        for worker in workers:
            out, _ = worker.communicate(timeout=60)
            result = json.loads(out.decode().strip().splitlines()[-1])
            latencies += result["latencies"]
            errors += result["errors"]
    finally:
        for proc in (*workers, server):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    return Round(latencies, errors, cpu, phones_cpu, seconds)


def summarise(rounds: list[Round]) -> dict[str, float]:
    latencies = sorted(x for r in rounds for x in r.latencies)
    seconds = sum(r.seconds for r in rounds)

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(pct(1.0), 2),
        "errors": sum(r.errors for r in rounds),
        "server_cpu_pct": round(100 * sum(r.server_cpu_s for r in rounds) / seconds, 1),
        "phones_cpu_pct": round(100 * sum(r.phones_cpu_s for r in rounds) / seconds, 1),
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--phones", type=int, default=100, help="phones at once (100)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per server (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (2)")
    p.add_argument("--think-ms", type=float, default=100.0,
                   help="mean pause between a phone's requests, ms (100); 0: flat out")  # fmt: skip
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating portal/bare rounds sharing --seconds (2)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2,
                   help="processes the phones are spread over (2)")  # fmt: skip
    p.add_argument("--serve", choices=("portal", "bare"), help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.serve:
        asyncio.run(serve(args.serve, args.port, args.data_dir))
        return 0
    if args.worker:
        first, count, start, end = args.worker.split(",")
        base = f"http://127.0.0.1:{args.port}"
        window = (float(start), float(end))
        asyncio.run(phones(int(first), int(count), base, args.think_ms / 1000, window))
        return 0
    if not 0 < args.phones <= 250:
        p.error("--phones must be 1..250 (one loopback address each)")
    # Alternate short rounds, so that whatever else the machine does hits both alike.
    rounds: dict[str, list[Round]] = {"portal": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            for kind in rounds:
                data_dir = Path(tmp) / f"{kind}-{n}"
                data_dir.mkdir()
                rounds[kind].append(run_round(kind, args, data_dir, args.seconds / args.rounds))
    portal, bare = summarise(rounds["portal"]), summarise(rounds["bare"])
    print(f"portal: {json.dumps(portal)}", flush=True)
    print(f"bare aiohttp: {json.dumps(bare)}", flush=True)
    summary = {
        "phones": args.phones,
        "think_ms": args.think_ms,
        "seconds": args.seconds,
        "req_per_s": portal["req_per_s"],
        "p50_ms": portal["p50_ms"],
        "p99_ms": portal["p99_ms"],
        "errors": portal["errors"],
        "server_cpu_pct": portal["server_cpu_pct"],
        "phones_cpu_pct": portal["phones_cpu_pct"],
        "bare_req_per_s": bare["req_per_s"],
        "bare_p50_ms": bare["p50_ms"],
        "bare_p99_ms": bare["p99_ms"],
        "bare_server_cpu_pct": bare["server_cpu_pct"],
        "goal_p99_ms": GOAL_P99_MS,
        "goal_met": portal["p99_ms"] < GOAL_P99_MS,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
