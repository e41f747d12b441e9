"""Timetable packages over HTTP for the buses: `GET /timetables/{sha256}.zip`, with Range.

Served like the media (central/http/media.py's `immutable_file`): the address is the content's
hash, so a response never changes and `Range: bytes=N-` resumes a download a tunnel cut. The
bus checks size and sha256 against its desired document's `TimetableRef` before it uses it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from central.http.media import immutable_file, security_headers
from central.media import MediaType
from central.timetables import package_path

__all__ = ["timetable_routes"]

PACKAGE = MediaType("application/zip", "timetable", "zip")


def timetable_routes(root: str | Path) -> list[web.RouteDef]:
    """The route serving the packages under `root` (central/timetables.py writes them)."""
    folder = Path(root)
    headers = security_headers(PACKAGE)

    async def serve(request: web.Request) -> web.StreamResponse:
        path = package_path(folder, request.match_info["sha"])
        return immutable_file(path, headers, "timetable package")

    return [web.get("/timetables/{sha:[0-9a-f]{64}}.zip", serve)]
