"""Media over HTTP for the buses: `GET /media/{sha256}[.ext]`, with Range requests.

A route table (`media_routes`) so that any aiohttp app can mount it. aiohttp's FileResponse
answers `Range: bytes=N-` with 206 and the rest of the file, which is how a bus resumes a
download cut by a tunnel. The address is the content's hash, so responses never change and
may be cached for ever. The type is sniffed from the file itself, the same way the library
admitted it; HTML and SVG get a CSP sandbox: no origin, no network, no forms, no plugins.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from central.media import SNIFF_BYTES, MediaRejected, MediaType, media_path, sniff

# An HTML ad may animate itself with inline script and style, and show inline (data:) images;
# it gets a unique opaque origin, so it cannot read anything of the player or central.
HTML_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data:; media-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'"
)
SVG_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SHA_ROUTE = "/media/{sha:[0-9a-f]{64}}"


def security_headers(media: MediaType) -> dict[str, str]:
    """Headers for serving a media file of this type (also used on the bus)."""
    headers = {
        "Content-Type": media.mime,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "public, max-age=31536000, immutable",
    }
    if media.mime == "text/html":
        headers["Content-Security-Policy"] = HTML_CSP
    elif media.mime == "image/svg+xml":
        headers["Content-Security-Policy"] = SVG_CSP
    return headers


def immutable_file(path: Path, headers: dict[str, str], what: str) -> web.FileResponse:
    """A content-addressed file (its bytes never change) with Range support: aiohttp's
    FileResponse answers `Range: bytes=N-` with 206 and the rest. 404 if there is none.
    Also serves central's timetable packages (central/http/timetables.py)."""
    if not path.is_file():
        raise web.HTTPNotFound(text=f"no such {what}\n")
    return web.FileResponse(path, headers=headers)


def media_routes(store_dir: str | Path) -> list[web.RouteDef]:
    """Routes serving the library in `store_dir`: `/media/{sha256}` and `/media/{sha256}.{ext}`."""
    root = Path(store_dir)
    types: dict[str, MediaType] = {}  # sha -> type: the bytes behind a hash never change

    async def serve(request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha"]
        path = media_path(root, sha)
        if not path.is_file():
            raise web.HTTPNotFound(text="no such media\n")
        media = types.get(sha)
        if media is None:
            with path.open("rb") as f:
                head = f.read(SNIFF_BYTES)
            try:
                media = sniff(head)
            except MediaRejected as exc:  # a file that did not come through the library
                raise web.HTTPNotFound(text="no such media\n") from exc
            types[sha] = media
        return immutable_file(path, security_headers(media), "media")

    return [
        web.get(SHA_ROUTE, serve),
        web.get(SHA_ROUTE + ".{ext:[a-z0-9]{1,5}}", serve),
    ]


def media_app(store_dir: str | Path) -> web.Application:
    """A stand-alone app serving only the media (tests, or a separate media host)."""
    app = web.Application()
    app.add_routes(media_routes(store_dir))
    return app
