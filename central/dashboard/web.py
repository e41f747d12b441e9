"""The dispatcher dashboard in a browser: textual-serve starts one dashboard process per browser
session (the same Textual app as in a terminal, drawn by xterm.js in the page) and relays its
screen and keys over a websocket.

It has no login of its own: whoever reaches its port drives a dashboard under the broker
identity it was started with. So it binds the loopback interface unless told otherwise, and
deploy/README.md ("The dashboard in a browser") puts a reverse proxy with TLS and a login in
front of it. What it checks itself: a websocket must come from a page of its own public URL
(the Origin header; otherwise any web site open in a dispatcher's browser could drive the
dashboard through it), a terminal may be at most MAX_CELLS wide and high, and at most
`sessions` browser sessions run at once (default one: deploy/'s broker forces each account's
client id to its name, so a second dashboard under the same account would take the first's
connection over, back and forth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import textual_serve
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

log = logging.getLogger("busfleet.central.dashboard.web")

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
QUIT_S = 10.0  # a session's dashboard process may take this long to quit, then it is killed
MAX_CELLS = 1000  # columns or rows a browser may ask for (each costs the session's app memory)
TITLE = "busfleet dashboard"
NO_LOGIN = (
    "this web dashboard has NO LOGIN of its own: anyone who reaches {url} drives a dashboard "
    "as the broker identity it runs under. Keep it on 127.0.0.1 behind a reverse proxy with "
    'TLS and a login (deploy/README.md, "The dashboard in a browser").'
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebError(ValueError):
    """An option the web dashboard cannot serve with (said to the operator, not a traceback)."""


def origin_of(url: str) -> str:
    """The browser Origin of pages under `url`: scheme://host[:port], lower case."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebError(f"public URL {url!r} is not an http:// or https:// URL with a host")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError as exc:
        raise WebError(f"public URL {url!r}: {exc}") from None
    suffix = "" if port in (None, default) else f":{port}"
    return f"{parts.scheme}://{host.lower()}{suffix}"


def _size_ok(value: str | None) -> bool:
    return value is None or (value.isdigit() and 0 < int(value) <= MAX_CELLS)


class _Session(AppService):
    """One browser session's dashboard process; stopping it waits until the process is gone
    (killed after QUIT_S), so no dashboard outlives its session or the server."""

    async def stop(self) -> None:
        await super().stop()
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            await asyncio.wait_for(process.wait(), QUIT_S)
        except TimeoutError:
            log.warning("a dashboard process did not quit within %.0f s: killed", QUIT_S)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


# textual-serve's page loads its font from Google's servers: every dispatcher's browser would
# tell Google when it opens the dashboard (a German court fined exactly that, LG München I,
# 3 O 17493/20). Served without it: the browser's own monospace font.
_REMOTE_FONT = re.compile(r"<link[^>]*https://fonts\.googleapis\.com[^>]*>", re.S)


def local_templates(into: Path) -> Path:
    """textual-serve's templates in `into`, with nothing loaded from another site."""
    upstream = Path(textual_serve.__file__).parent / "templates"
    for template in upstream.glob("*.html"):
        (into / template.name).write_text(_REMOTE_FONT.sub("", template.read_text()))
    return into


class DashboardServer(Server):
    """textual-serve's server for `argv` (one process per session; the command is run by a
    shell, so it is given as shlex.join of the argument list: no text is ever interpreted)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        host: str,
        port: int,
        public_url: str | None,
        sessions: int = 1,
    ) -> None:
        if not 0 < port < 65536:
            raise WebError(f"port {port} is not a TCP port (1-65535)")
        if not 0 < sessions <= 100:
            raise WebError(f"sessions {sessions}: between 1 and 100")
        self.max_sessions = sessions
        url_host = f"[{host}]" if ":" in host else host
        public = public_url.rstrip("/") if public_url else f"http://{url_host}:{port}"
        self.origin = origin_of(public)
        self._templates = tempfile.TemporaryDirectory(prefix="busfleet-dash-")
        super().__init__(
            shlex.join(argv),
            host=host,
            port=port,
            title=TITLE,
            public_url=public,
            templates_path=local_templates(Path(self._templates.name)),
        )
        self.refused = 0  # websockets refused (wrong origin, absurd size), each logged
        self.sessions: set[asyncio.Task[object]] = set()

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path == "/ws":
                origin = request.headers.get("Origin")
                if origin is None or origin.lower() != self.origin:
                    return self._refuse(request, f"origin {origin!r} is not {self.origin}")
                width, height = request.query.get("width"), request.query.get("height")
                if not (_size_ok(width) and _size_ok(height)):
                    return self._refuse(request, f"terminal size {width!r}x{height!r}")
                if len(self.sessions) >= self.max_sessions:
                    why = f"{len(self.sessions)} session(s) open, the most --sessions allows"
                    return self._refuse(request, why, status=503)
            return await handler(request)

        app.middlewares.append(guard)
        return app

    def _refuse(self, request: web.Request, why: str, status: int = 403) -> web.Response:
        self.refused += 1
        log.warning("refused a dashboard session from %s: %s", request.remote, why)
        return web.Response(status=status, text=f"refused: {why}\n")

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's session (one dashboard process), with a process that is waited for
        and a session the server's shutdown can end."""
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        session: _Session | None = None

        async def close() -> None:
            await websocket.close()

        try:
            await websocket.prepare(request)
            session = _Session(
                self.command,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=close,
                download_manager=self.download_manager,
                debug=self.debug,
            )
            await session.start(width, height)
            await self._process_messages(websocket, session)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception:
            log.exception("a dashboard session failed")
        finally:
            if session is not None:
                await session.stop()
            self.sessions.discard(task)
        return websocket

    async def on_shutdown(self, app: web.Application) -> None:
        """End every session (each waits for its dashboard process) before the loop closes."""
        running = list(self.sessions)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=QUIT_S + 5)

    def initialize_logging(self) -> None:
        """Plain lines on stderr (textual-serve's own are wrapped for a terminal)."""
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    async def on_startup(self, app: web.Application) -> None:
        """Nothing (textual-serve prints its logo here, before the port is even bound)."""

    def serve(self, debug: bool = False) -> None:
        """Serve until SIGINT or SIGTERM (as textual-serve's), saying so once it is bound."""
        self.debug = debug
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        loop.add_signal_handler(signal.SIGINT, self.request_exit)
        loop.add_signal_handler(signal.SIGTERM, self.request_exit)
        web.run_app(
            self._make_app(),
            host=self.host,
            port=self.port,
            handle_signals=False,
            loop=loop,
            print=self._bound,
        )

    def _bound(self, *_said: object) -> None:
        """Say where it serves, and loudly that nobody is asked for a password."""
        print(f"busfleet central dash --web: serving on {self.public_url}", file=sys.stderr)
        print(f"WARNING: {NO_LOGIN.format(url=self.public_url)}", file=sys.stderr)
        if self.host not in LOOPBACK:
            print(
                f"WARNING: bound to {self.host}, not the loopback interface: other machines "
                "reach the dashboard without a login",
                file=sys.stderr,
            )
        sys.stderr.flush()
