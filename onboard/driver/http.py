"""The driver terminal's HTTP guards: same-origin POSTs, JSON bodies, its page's policy.

(The headers every local page gets are onboard/web/site.py's.)

A POST must come from the terminal's own page: its `Origin` header names this server, by an
address or `localhost` (a DNS name could be an attacker's pointing here: DNS rebinding), and
its body is JSON (a cross-site form cannot send that without a CORS preflight, which nobody
answers). Whoever else can reach the port cannot raise an alarm from a web page.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger("busfleet.onboard.driver")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def same_origin_posts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a POST that is not from this server's own page (see the module docstring)."""
    if request.method == "POST":
        reason = cross_origin_reason(request.headers.get("Origin"), request.host)
        if reason is not None:
            log.warning("refused a POST to %s: %s", request.path, reason)
            raise web.HTTPForbidden(text=reason)
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="JSON only")
    return await handler(request)


def cross_origin_reason(origin: str | None, host: str) -> str | None:
    """Why a POST with this Origin to this Host is refused, or None if it is same-origin."""
    if not origin:
        return "no Origin header"
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
        return f"cross-origin request from {origin!r}"
    name = parts.hostname or ""
    if name != "localhost":
        try:
            ipaddress.ip_address(name)
        except ValueError:
            # A DNS name pointing here could be an attacker's (DNS rebinding): the terminal
            # is reached by address in the cab.
            return f"terminal reached by the name {name!r}, not by an address"
    return None


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 400 for anything else."""
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="a JSON object, please")
    return body


def nonce_of(body: dict[str, Any]) -> str | None:
    """The page's id for one action (the same on every retry of it), if it sent one."""
    nonce = body.get("id")
    return nonce[:64] if isinstance(nonce, str) and nonce else None
