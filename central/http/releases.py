"""The release repository over HTTP, read-only: `GET /releases/metadata/{file}` and
`GET /releases/targets/{file}` (central/releases/repository.py's metadata/ and targets/).

What a bus's TUF client (onboard/update/fetch.py) fetches: `N.root.json`, `timestamp.json`,
`N.snapshot.json`, `N.targets.json` and `{sha256}.busfleet-{version}.tar`. Nothing else of
the folder is reachable (the keys beside them least of all): a name is one path segment of
letters, digits and `._+-`, never starting with a dot, and the file it names must be a regular
file directly in its folder. The files are streamed (aiohttp's FileResponse, with Range:
a bus resumes a download a tunnel cut). Trust does not come from this server: every byte is
checked against signed metadata on the bus. timestamp.json changes in place, so it is never
cached; every other file is named by its version or hash and never changes.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

__all__ = ["release_routes", "releases_app"]

_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}"
_FOLDERS = {"metadata": "application/json", "targets": "application/x-tar"}


def release_routes(repo_dir: str | Path) -> list[web.RouteDef]:
    """The routes serving the repository in `repo_dir`; none when it is empty (not served:
    404 like any unknown address)."""
    if not str(repo_dir):
        return []
    root = Path(repo_dir)

    async def serve(request: web.Request) -> web.StreamResponse:
        folder = request.match_info["folder"]
        path = _file(root / folder, request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound(text="no such file\n")
        headers = {
            "Content-Type": _FOLDERS[folder],
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache"
            if path.name == "timestamp.json" or path.name == "root.json"
            else "public, max-age=31536000, immutable",
        }
        return web.FileResponse(path, headers=headers)

    return [web.get(r"/releases/{folder:metadata|targets}/{name:" + _NAME + "}", serve)]


def _file(folder: Path, name: str) -> Path | None:
    """The regular file `name` directly in `folder`, or None: no other path gets out."""
    if "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        return None  # the route's pattern allows none of these; checked again all the same
    path = folder / name
    try:
        if path.is_symlink() or not path.is_file():
            return None
        if path.resolve().parent != folder.resolve():
            return None
    except (OSError, ValueError):
        return None
    return path


def releases_app(repo_dir: str | Path) -> web.Application:
    """A stand-alone app serving only the repository (tests, or a separate release host)."""
    app = web.Application()
    app.add_routes(release_routes(repo_dir))
    return app
