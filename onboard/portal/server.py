"""The portal's HTTP side (aiohttp): OS probes, terms, acceptance, RFC 8908 API, feedback.

Two kinds of request arrive. Requests for the portal itself (the Host is the portal's
address) get the pages. Everything else was intercepted by the firewall: a client that has
not accepted opened some http:// URL, and TCP 80 was redirected here. Such a request is
answered with a redirect to the portal — which is what makes a phone open its portal sheet
when it is one of the OS detection probes (REFERENCE.md section 4). A client that has
accepted is let through by the firewall and reaches the real probe servers; should one of
its requests still land here (a keep-alive connection from before acceptance, or the null
firewall in development) the portal answers the probe with the "online" reply itself.

`/accept` and `/logout` change a passenger's session, so another site must not make a phone
POST them (CSRF): each form carries a token that is an HMAC of the client, under a key the
portal draws at start, and a POST without the client's token, or with an `Origin` of another
site, is refused with 403 (the terms page again, with a fresh token). An Origin check alone
would not do: the pages say `Referrer-Policy: no-referrer`, under which browsers send
`Origin: null` with the portal's own forms.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from aiohttp import web

from onboard.portal.core import Portal
from onboard.portal.feedback import CATEGORIES, FeedbackRejected, clean_text
from onboard.portal.pages import (
    feedback_page,
    pick_lang,
    status_page,
    terms_page,
    thanks_page,
)
from onboard.portal.sessions import State

log = logging.getLogger("busfleet.onboard.portal")

API_PATH = "/api/captive"
CAPTIVE_JSON = "application/captive+json"
MAX_BODY = 16 * 1024  # a feedback form is 1,000 characters; anything bigger is refused (413)

# path -> (status, content type, body) that the OS accepts as "online".
PROBES: dict[str, tuple[int, str, str]] = {
    "/hotspot-detect.html": (
        200,
        "text/html",
        "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>",
    ),
    "/library/test/success.html": (
        200,
        "text/html",
        "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>",
    ),
    "/generate_204": (204, "", ""),
    "/gen_204": (204, "", ""),
    "/connecttest.txt": (200, "text/plain", "Microsoft Connect Test"),
    "/ncsi.txt": (200, "text/plain", "Microsoft NCSI"),
    "/success.txt": (200, "text/plain", "success\n"),
}

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # No script, nothing from elsewhere: a hostile string that slipped through stays inert.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_name(host: str) -> str:
    """A Host header without its port, lower case ("[::1]:80" -> "[::1]")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0]


def portal_hosts(portal: Portal) -> frozenset[str]:
    """The host names that address the portal itself (on any port)."""
    hosts = {host_name(urlsplit(portal.settings.public_url).netloc)}
    hosts.update(host_name(h) for h in portal.settings.extra_hosts)
    return frozenset(hosts)


def make_app(portal: Portal) -> web.Application:
    """The aiohttp application of the portal."""
    hosts = portal_hosts(portal)
    public_url = portal.settings.public_url
    csrf_key = secrets.token_bytes(32)  # per start: a page from before a restart is refused

    def csrf_token(request: web.Request) -> str:
        client = portal.client_key(remote(request)).encode()
        return hmac.new(csrf_key, client, hashlib.sha256).hexdigest()[:32]

    def forged(request: web.Request, form: Mapping[str, object]) -> bool:
        """A POST that another site made the phone send (see the module docstring)."""
        origin = request.headers.get("Origin", "null")
        if origin != "null" and host_name(urlsplit(origin).netloc) not in hosts:
            return True
        return not hmac.compare_digest(str(form.get("csrf", "")), csrf_token(request))

    def remote(request: web.Request) -> str:
        return request.remote or ""

    def page(text: str, status: int = 200) -> web.Response:
        portal.stats.count("page_views")
        return web.Response(
            text=text, status=status, content_type="text/html", headers=PAGE_HEADERS
        )

    def lang_of(request: web.Request, form_lang: str | None = None) -> str:
        query = form_lang or request.query.get("lang")
        return pick_lang(query, request.headers.get("Accept-Language", ""))

    def redirect(location: str, status: int = 303) -> web.Response:
        return web.Response(
            status=status, headers={"Location": location, "Cache-Control": "no-store"}
        )

    async def online_or_captive(request: web.Request, captive: bool) -> web.Response:
        probe = PROBES.get(request.path)
        headers = {"Cache-Control": "no-store", "Connection": "close"}
        if captive or probe is None:
            # Any other URL of an authorised client: the status page, never back to itself.
            target = public_url if captive else public_url.rstrip("/") + "/status"
            return web.Response(status=302, headers={**headers, "Location": target})
        status, ctype, body = probe
        if status == 204:
            return web.Response(status=204, headers=headers)
        return web.Response(status=status, text=body, content_type=ctype, headers=headers)

    @web.middleware
    async def intercepted(request: web.Request, handler: Handler) -> web.StreamResponse:
        if host_name(request.host) in hosts and request.path not in PROBES:
            return await handler(request)
        session = await portal.seen(remote(request))
        return await online_or_captive(request, session.state is not State.AUTHORISED)

    async def index(request: web.Request) -> web.Response:
        lang = lang_of(request)
        session = await portal.seen(remote(request))
        if session.state is State.AUTHORISED:
            return redirect(f"/status?lang={lang}", 302)
        return page(terms(request, lang))

    def terms(request: web.Request, lang: str, error: str = "") -> str:
        limits = portal.settings.limits
        return terms_page(
            lang,
            portal.content(),
            session_s=limits.session_s,
            idle_s=limits.idle_s,
            operator=portal.settings.operator,
            error=error,
            csrf=csrf_token(request),
        )

    def refused(request: web.Request, lang: str) -> web.Response:
        portal.stats.count("forged_posts")
        log.warning("refused a cross-site POST to %s", request.path)
        return page(terms(request, lang, "form_expired"), 403)

    async def accept(request: web.Request) -> web.Response:
        form = await request.post()
        lang = lang_of(request, str(form.get("lang", "")))
        if forged(request, form):
            return refused(request, lang)
        if form.get("accept") != "yes":
            await portal.seen(remote(request))
            return page(terms(request, lang, "must_accept"), 400)
        outcome = await portal.accept(remote(request))
        if outcome == "full":
            return page(terms(request, lang, "full"), 503)
        if outcome in ("unknown", "error"):
            return page(terms(request, lang, outcome), 400 if outcome == "unknown" else 500)
        return redirect(f"/status?lang={lang}")

    async def status(request: web.Request) -> web.Response:
        session = await portal.seen(remote(request))
        info = portal.info(session)
        return page(status_page(lang_of(request), portal.content(), info, csrf_token(request)))

    async def logout(request: web.Request) -> web.Response:
        form = await request.post()
        if forged(request, form):
            return refused(request, lang_of(request, str(form.get("lang", ""))))
        await portal.logout(remote(request))
        return redirect(f"/?lang={lang_of(request, str(form.get('lang', '')))}")

    async def api(request: web.Request) -> web.Response:
        """RFC 8908: the Captive Portal API."""
        session = await portal.seen(remote(request))
        info = portal.info(session)
        body: dict[str, object] = {
            "captive": not info.authorised,
            "user-portal-url": public_url,
            "venue-info-url": public_url.rstrip("/") + "/status",
        }
        if info.authorised:
            body["seconds-remaining"] = int(info.seconds_left)
            if info.bytes_left is not None:
                body["bytes-remaining"] = info.bytes_left
            body["can-extend-session"] = False
        return web.Response(
            body=json.dumps(body).encode(),
            headers={"Content-Type": CAPTIVE_JSON, "Cache-Control": "private"},
        )

    async def feedback_form(request: web.Request) -> web.Response:
        token = portal.feedback.tokens.issue(portal.client_key(remote(request)))
        return page(feedback_page(lang_of(request), token))

    async def feedback_post(request: web.Request) -> web.Response:
        form = await request.post()
        lang = lang_of(request, str(form.get("lang", "")))
        category, text = str(form.get("category", "")), str(form.get("text", ""))
        key = portal.client_key(remote(request))
        try:
            portal.feedback.submit(key, str(form.get("token", "")), category, text, portal.clock())
        except FeedbackRejected as exc:
            portal.stats.count("feedback_rejected")
            token = portal.feedback.tokens.issue(key)
            status = 429 if exc.reason == "rate" else 400
            shown = category if category in CATEGORIES else ""
            return page(
                feedback_page(lang, token, error=exc.reason, category=shown, text=text[:2000]),
                status,
            )
        return page(thanks_page(lang, clean_text(text[:2000])))

    app = web.Application(middlewares=[intercepted], client_max_size=MAX_BODY)
    app.router.add_get("/", index)
    app.router.add_post("/accept", accept)
    app.router.add_get("/status", status)
    app.router.add_post("/logout", logout)
    app.router.add_get(API_PATH, api)
    app.router.add_get("/feedback", feedback_form)
    app.router.add_post("/feedback", feedback_post)
    return app
