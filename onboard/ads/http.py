"""The cached media over HTTP on the bus, for the display's ad slot: `/media/{sha256}.{ext}`.

Same origin as the display pages (their CSP allows only 'self'), so the slot never loads
anything from outside the bus. Only verified files are served; HTML and SVG carry a CSP
sandbox, as at central.
"""

from __future__ import annotations

from aiohttp import web

from onboard.ads.cache import EXTENSIONS, MIME_OF, MediaCache

PREFIX = "/media"
HTML_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data:; media-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'"
)
OTHER_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def local_url(sha256: str, mime: str) -> str:
    """The display's URL of a cached media file."""
    return f"{PREFIX}/{sha256}.{EXTENSIONS.get(mime, 'bin')}"


def local_media_routes(cache: MediaCache) -> list[web.RouteDef]:
    """Routes serving the cache; mount them on the display's app."""

    async def serve(request: web.Request) -> web.StreamResponse:
        sha, ext = request.match_info["sha"], request.match_info["ext"]
        path = cache.path(sha)
        if path is None or not path.name.endswith("." + ext) or ext not in MIME_OF:
            raise web.HTTPNotFound(text="no such media\n")
        mime = MIME_OF[ext]
        headers = {
            "Content-Type": mime,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "public, max-age=86400, immutable",
            "Content-Security-Policy": HTML_CSP if mime == "text/html" else OTHER_CSP,
        }
        return web.FileResponse(path, headers=headers)

    return [web.get(PREFIX + "/{sha:[0-9a-f]{64}}.{ext:[a-z0-9]{1,5}}", serve)]
