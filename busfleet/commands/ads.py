"""`busfleet central media|playlist|report ...`: the advertising tools of city hall.

Registered under `central` (by busfleet/commands/central.py), with the same --config/--db
options as the other central tools. Every one asks the running central (central/client.py):
`media import` uploads the files (read here, on the dispatcher's machine) and has central
import them into its library, `playlist import` sends the playlist's text, `playlist assign`
has it publish; the listings and the plays report
have it read its database, a page at a time (a month of plays for a city is long).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pathlib import Path

    from central.config import CentralConfig
    from protocols.requests import DispatchReply

    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `media`, `playlist` and `report` to `busfleet central`."""
    _media(csub, connection_args)
    _playlist(csub, connection_args)
    _report(csub, connection_args)


def _media(csub: Parsers, connection_args: ConnectionArgs) -> None:
    p = csub.add_parser(
        "media",
        help="the ad media library (import, list)",
        description="The media library: images (PNG, JPEG, GIF, WebP, SVG), videos (MP4, "
        "WebM) and HTML pages, stored by their sha256 and served to the buses over HTTP.",
    )
    sub = p.add_subparsers(dest="media_command", metavar="COMMAND", required=True)
    imp = sub.add_parser(
        "import",
        help="add files to the library",
        description="Upload media files (read here) to the running central, which checks "
        "and adds them. The type is taken from the bytes; files over "
        "the size cap, and SVGs with scripts, event handlers or external references, are "
        "refused. Prints one JSON line per file (sha256, name, mime, size).",
    )
    connection_args(imp)
    _media_dir_arg(imp)
    imp.add_argument("files", nargs="+", metavar="FILE", help="files to import")
    imp.add_argument("--name", help="name in the library (default: the file name; one file)")
    imp.set_defaults(func=media_import_cmd)
    ls = sub.add_parser(
        "list", help="list the library", description="One JSON line per media file."
    )
    connection_args(ls)
    _media_dir_arg(ls)
    ls.set_defaults(func=media_list_cmd)


def _media_dir_arg(p: argparse.ArgumentParser) -> None:
    # Central keeps the library; the option stays so that scripts written for it still run.
    p.add_argument("--media-dir", help="ignored: the running central uses its own library")


def _playlist(csub: Parsers, connection_args: ConnectionArgs) -> None:
    p = csub.add_parser(
        "playlist",
        help="ad playlists and schedules (import, list, show, assign)",
        description="Playlists of media items with durations and schedules (date range, "
        "weekdays, time-of-day windows, priority, plays-per-hour caps, share of the hour, "
        "targets by route, bus or geo-fence). Written as TOML or JSON; see "
        "protocols/ads/playlist.py for every field.",
    )
    sub = p.add_subparsers(dest="playlist_command", metavar="COMMAND", required=True)
    imp = sub.add_parser(
        "import",
        help="store a playlist from a TOML or JSON file",
        description="Send the playlist's text (read here, at most 100,000 characters) to the "
        "running central, which resolves the items' media (by name or hash) in the library, "
        "validates the whole playlist and stores it; its revision grows when its content "
        "changed.",
    )
    connection_args(imp)
    _media_dir_arg(imp)
    imp.add_argument("file", help="the playlist (.toml, or JSON)")
    imp.add_argument(
        "--push", action="store_true", help="publish the new revision to the buses that run it"
    )
    imp.set_defaults(func=playlist_import_cmd)
    ls = sub.add_parser("list", help="list playlists", description="One line per playlist.")
    connection_args(ls)
    ls.set_defaults(func=playlist_list_cmd)
    show = sub.add_parser("show", help="print a playlist as JSON", description="Print it.")
    connection_args(show)
    show.add_argument("playlist", help="playlist id")
    show.set_defaults(func=playlist_show_cmd)
    assign = sub.add_parser(
        "assign",
        help="push a playlist to buses",
        description="Put the playlist into the buses' desired state (versioned, retained): "
        "each bus downloads its media and switches to it when everything is verified.",
    )
    connection_args(assign)
    assign.add_argument("playlist", help="playlist id; `none` takes the ads off the buses")
    assign.add_argument("buses", nargs="+", metavar="BUS", help="bus ids")
    assign.set_defaults(func=playlist_assign_cmd)


def _report(csub: Parsers, connection_args: ConnectionArgs) -> None:
    p = csub.add_parser(
        "report",
        help="reports: plays for advertisers; trips, mileage, punctuality for operators",
        description="Reports from the proof-of-play records the buses sent.",
    )
    sub = p.add_subparsers(dest="report_command", metavar="COMMAND", required=True)
    plays = sub.add_parser(
        "plays",
        help="plays per item, per day, per route and bus",
        description="Plays per item, per day (local to --tz), per route and bus, with the "
        "seconds on screen. Example: `busfleet central report plays --from 2025-06-01 "
        "--to 2025-06-30 --format csv > june.csv`.",
    )
    connection_args(plays)
    plays.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
    plays.add_argument("--to", dest="last", required=True, help="last day (inclusive)")
    plays.add_argument("--format", choices=("csv", "json"), default="csv")
    plays.add_argument("--tz", default="UTC", help="timezone of the days (IANA, default UTC)")
    plays.add_argument("--item", help="only this item")
    plays.set_defaults(func=report_plays_cmd)
    from busfleet.commands import operator_reports  # issue 18: trips, mileage, ...

    operator_reports.register(sub, connection_args)


# -- handlers -------------------------------------------------------------------------------
def _fail(command: str, message: object) -> int:
    print(f"busfleet central {command}: {message}", file=sys.stderr)
    return 2


def media_import_cmd(args: argparse.Namespace) -> int:
    """Uploads the files to the running central, which imports them into its library."""
    import json

    from busfleet.commands._common import _answered, config_from

    if args.name and len(args.files) > 1:
        return _fail("media import", "--name takes one file")
    prog = "busfleet central media import"
    answer = _answered(prog, _upload_media(config_from(args), args.files, args.name, prog))
    if isinstance(answer, int):
        return answer
    reply, rejected = answer
    if reply is not None and not reply.ok:
        print(f"{prog}: {reply.error}", file=sys.stderr)
        return 1 if reply.failed else 2
    if reply is not None:
        rejected += [(str(r["path"]), str(r["error"])) for r in reply.tables.get("rejected", [])]
    for path, error in rejected:
        print(f"{prog}: {path}: {error}", file=sys.stderr)
    for row in [] if reply is None else reply.tables.get("media", []):
        print(json.dumps(row))
    return 1 if rejected else 0


async def _upload_media(
    config: CentralConfig, files: list[str], name: str | None, prog: str
) -> tuple[DispatchReply | None, list[tuple[str, str]]]:
    """Each file uploaded (read here, at most the largest size cap), then one import of all
    of them; a file that cannot be read or sent is said, and the others go on."""
    from pathlib import Path

    from busfleet.commands._common import dispatcher_name
    from busfleet.commands._upload import asker, progress
    from central import client
    from central.media import SIZE_CAPS
    from central.operator_files import NotAFile
    from protocols.requests import ImportMedia, UploadedFile

    rejected: list[tuple[str, str]] = []
    uploaded: list[UploadedFile] = []
    async with client.connect(config, dispatcher_name(None)) as requests:
        ask = asker(requests)
        for file in files:
            label = (name or Path(file).name)[:200] or "media"
            try:
                upload = await client.upload(
                    ask, file, limit=max(SIZE_CAPS.values()), progress=progress(prog, label)
                )
            except (NotAFile, client.UploadFailed) as exc:
                rejected.append((file, str(exc)))
                continue
            uploaded.append(UploadedFile(upload=upload, name=label))
        if not uploaded:
            return None, rejected
        return await requests.ask(client.envelope(ImportMedia(files=uploaded))), rejected


def media_list_cmd(args: argparse.Namespace) -> int:
    """Asks the running central for its library (--media-dir is central's own)."""
    import json

    from busfleet.commands._common import read_central
    from protocols.requests import ListMedia

    records = read_central(args, ListMedia(), "busfleet central media list")
    if isinstance(records, int):
        return records
    for info in records:
        print(json.dumps(info))
    return 0


def playlist_import_cmd(args: argparse.Namespace) -> int:
    """Sends the playlist's text (read here) to the running central, which stores it."""
    from pathlib import Path

    from busfleet.commands._common import _answered, _refused, config_from
    from central.operator_files import NotAFile

    prog = "busfleet central playlist import"
    try:
        reply = _answered(prog, _send_playlist(config_from(args), Path(args.file), args.push))
    except NotAFile as exc:
        return _fail("playlist import", exc)
    if isinstance(reply, int):
        return reply
    if not reply.ok:
        return _refused(prog, reply)
    r = reply.result
    if not r.get("media_url"):
        print(f"{prog}: warning: no central.media_url (nor http_port): buses need "
              "ads.media_url to download the media", file=sys.stderr)  # fmt: skip
    print(f"playlist {r['id']} revision {r['revision']}: {r['items']} items, "
          f"{r['schedules']} schedules")  # fmt: skip
    pushed = sorted(str(row["bus"]) for row in reply.tables.get("pushed", []))
    if pushed:
        print(f"pushed to {len(pushed)} buses: {' '.join(pushed)}")
    return 0


async def _send_playlist(config: CentralConfig, path: Path, push: bool) -> DispatchReply:
    """The playlist's text in the request itself (it is small); read once central is there."""
    from busfleet.commands._common import dispatcher_name
    from central import client
    from central.operator_files import NotAFile, read_capped
    from protocols.requests import PLAYLIST_SOURCE_CHARS, ImportPlaylist

    async with client.connect(config, dispatcher_name(None)) as requests:
        try:  # UTF-8 takes up to 4 bytes a character: the text cap is checked once decoded
            text = read_capped(path, 4 * PLAYLIST_SOURCE_CHARS).decode()
        except UnicodeDecodeError as exc:
            raise NotAFile(f"{path}: not UTF-8 text ({exc.reason})") from exc
        if not text or len(text) > PLAYLIST_SOURCE_CHARS:
            raise NotAFile(f"{path}: a playlist is 1 to {PLAYLIST_SOURCE_CHARS} characters")
        kind: Literal["toml", "json"] = "toml" if path.suffix == ".toml" else "json"
        request = ImportPlaylist(source=text, format=kind, name=path.name[:200], push=push)
        return await requests.ask(client.envelope(request))


def playlist_list_cmd(args: argparse.Namespace) -> int:
    """Asks the running central for its playlists, in short."""
    from busfleet.commands._common import read_central
    from protocols.requests import ListPlaylists

    records = read_central(args, ListPlaylists(), "busfleet central playlist list")
    if isinstance(records, int):
        return records
    for pl in records:
        print(f"{pl['id']}\trevision {pl['revision']}\t{pl['items']} items\t"
              f"{pl['schedules']} schedules\t{pl['timezone']}")  # fmt: skip
    return 0


def playlist_show_cmd(args: argparse.Namespace) -> int:
    """Asks the running central for one playlist, whole; refused if there is none."""
    import msgspec

    from busfleet.commands._common import read_central
    from protocols.requests import ShowPlaylist

    records = read_central(args, ShowPlaylist(id=args.playlist), "busfleet central playlist show")
    if isinstance(records, int):
        return records
    for pl in records:
        print(msgspec.json.format(msgspec.json.encode(pl)).decode())
    return 0


def playlist_assign_cmd(args: argparse.Namespace) -> int:
    """One request per bus; the first refusal stops (the buses before it have it)."""
    from busfleet.commands._common import ask_central
    from protocols.requests import AssignPlaylist

    playlist = "" if args.playlist == "none" else args.playlist
    for bus in args.buses:
        reply = ask_central(
            args, AssignPlaylist(bus=bus, playlist=playlist), "busfleet central playlist assign"
        )
        if isinstance(reply, int):
            return reply
        print(f"{reply.result['bus']}: desired state version {reply.result['version']} published")
    return 0


def report_plays_cmd(args: argparse.Namespace) -> int:
    """Asks the running central for the report, every page of it; the format is ours."""
    import json
    import zoneinfo

    from busfleet.commands._common import read_central
    from central.reports import PlayRow, to_csv
    from protocols.requests import PlaysReport

    try:
        first, last = dt.date.fromisoformat(args.first), dt.date.fromisoformat(args.last)
        zoneinfo.ZoneInfo(args.tz)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        return _fail("report plays", exc)
    if last < first:
        return _fail("report plays", "--to is before --from")
    request = PlaysReport(first=first, last=last, timezone=args.tz, item=args.item)
    records = read_central(args, request, "busfleet central report plays")
    if isinstance(records, int):
        return records
    if args.format == "csv":
        sys.stdout.write(to_csv(PlayRow(**row) for row in records))
    else:
        for row in records:
            print(json.dumps(row))
    return 0
