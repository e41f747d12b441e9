"""`busfleet central import-gtfs|message|messages|withdraw`: timetable and passenger messages.

Registered under `central` (by busfleet/commands/central.py), with the same --config/--db and
broker options as the other central tools. `message` and `withdraw` ask the running central
(central/client.py), which stores and publishes; `messages` asks it for the list;
`import-gtfs` uploads the feed to central if one runs (busfleet/commands/_upload.py), else
fills the database itself (a new database, before central starts: the one tool that opens it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from busfleet.commands._common import ask_central, dispatcher_name
from central.when import parse_when

if TYPE_CHECKING:
    from pathlib import Path

    from central.config import CentralConfig
    from protocols.gtfs.table import Report
    from protocols.requests import DispatchReply

    ConnectionArgs = Callable[[argparse.ArgumentParser], None]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register_central(csub: Parsers, connection_args: ConnectionArgs) -> None:
    """Add `import-gtfs`, `message`, `messages` and `withdraw` to `busfleet central`."""
    imp = csub.add_parser(
        "import-gtfs",
        help="import a GTFS feed (zip or folder) as the timetable",
        description="Check a GTFS feed and store it in central's database, replacing the "
        "current timetable in one transaction. Reads agency, routes, stops, trips, stop times, "
        "calendar, calendar dates and shapes (optional: without shapes.txt trips run stop to "
        "stop). With a central running, the feed is read here and uploaded to it (a folder is "
        "zipped first; progress on stderr). Files that are not UTF-8 are read as Windows-1252 "
        "with a warning, unless --encoding says otherwise. Problems are listed as FILE line N, "
        "FIELD: what. With errors nothing is stored "
        "and the exit status is 2; warnings are listed and the feed is stored. The last line "
        "printed is one JSON object: routes, stops, trips, stop_times, shapes, warnings...",
    )
    connection_args(imp)
    imp.add_argument("path", metavar="PATH", help="GTFS .zip archive or folder of .txt files")
    imp.add_argument(
        "--list", type=int, default=20, metavar="N", help="list up to N issues of each kind"
    )
    imp.add_argument(
        "--encoding",
        metavar="NAME",
        help="read every file in this encoding (e.g. cp1252); default: UTF-8 where a file is, "
        "else Windows-1252, with a warning",
    )
    imp.set_defaults(func=import_gtfs_cmd)

    msg = csub.add_parser(
        "message",
        help="send a passenger message to displays and the Wi-Fi portal",
        description="Store a passenger message and put it into the desired state of every "
        "targeted bus. Targets (at least one, may repeat): --all buses, --route R (buses "
        "whose current assignment is on route R), --bus B. Times: ISO 8601 (2025-06-01T08:00, "
        "local time unless an offset is given) or +30m, +2h, +1d from now. The bus hides it "
        "at --until by its own clock; central then drops it from the desired state.",
    )
    connection_args(msg)
    msg.add_argument("--de", required=True, metavar="TEXT", help="German text (required)")
    msg.add_argument("--en", default="", metavar="TEXT", help="English text")
    msg.add_argument(
        "--priority", type=int, default=0, metavar="N", help="0 (normal, default) to 9 (urgent)"
    )
    msg.add_argument("--all", action="store_true", help="every bus")
    msg.add_argument("--route", action="append", default=[], metavar="R", help="a GTFS route_id")
    msg.add_argument("--bus", action="append", default=[], metavar="B", help="a bus id")
    msg.add_argument("--from", dest="valid_from", metavar="WHEN", help="shown from (default now)")
    msg.add_argument("--until", default="+24h", metavar="WHEN", help="shown until (default +24h)")
    msg.set_defaults(func=message_cmd)

    lst = csub.add_parser(
        "messages",
        help="list passenger messages",
        description="One JSON line per message, newest first: texts, targets, validity, status "
        "(active, expired, withdrawn) and the buses it goes to now.",
    )
    connection_args(lst)
    lst.add_argument("--status", choices=("active", "expired", "withdrawn"), help="only these")
    lst.set_defaults(func=messages_cmd)

    wd = csub.add_parser(
        "withdraw",
        help="withdraw a passenger message now",
        description="End a message before its time: it leaves the desired state of every bus.",
    )
    connection_args(wd)
    wd.add_argument("message_id", metavar="ID", help="the message id (see `central messages`)")
    wd.set_defaults(func=withdraw_cmd)


def _print_issues(report: Report, prog: str) -> None:
    from central.gtfs_import import issue_lines

    for line in issue_lines(report):
        print(f"{prog}: {line}", file=sys.stderr)


def import_gtfs_cmd(args: argparse.Namespace) -> int:
    """With a central running, the feed is uploaded to it (zipped, if a folder) and imported
    there; without one, it goes straight into the database (a new one, before central starts)."""
    from pathlib import Path

    from busfleet.commands._common import config_from
    from central.client import UploadFailed
    from central.errors import NoAnswer, Unavailable
    from central.gtfs_import import check_encoding
    from central.operator_files import NotAFile
    from protocols.errors import GtfsError

    prog = "busfleet central import-gtfs"
    config = config_from(args)
    try:
        if args.encoding:
            check_encoding(args.encoding)
        reply = asyncio.run(_upload_and_import(config, Path(args.path).absolute(), args, prog))
    except NoAnswer as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except Unavailable:  # no central runs: nobody else writes the database now
        return _import_directly(args, prog)
    except (NotAFile, UploadFailed, GtfsError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        print(json.dumps({"ok": False, "errors": 1, "warnings": 0}))
        return 1 if getattr(exc, "failed", False) else 2
    for issue in reply.tables.get("issues", []):
        print(f"{prog}: {issue['issue']}", file=sys.stderr)
    if not reply.ok:  # the same last line as an import without central (_import_into)
        print(f"{prog}: {reply.error}", file=sys.stderr)
        counts = {
            "errors": reply.result.get("errors", 1),
            "warnings": reply.result.get("warnings", 0),
        }
        print(json.dumps({"ok": False, **counts}))
        return 1 if reply.failed else 2
    print(json.dumps({"ok": True, **reply.result}))
    return 0


async def _upload_and_import(
    config: CentralConfig, path: Path, args: argparse.Namespace, prog: str
) -> DispatchReply:
    from busfleet.commands._upload import asker, progress, zipped
    from central import client
    from protocols.requests import ImportGtfs

    name = path.name[:200] or "feed"
    async with client.connect(config, dispatcher_name(None)) as requests:
        ask = asker(requests)
        with zipped(path) as archive:
            upload = await client.upload(ask, archive, progress=progress(prog, name))
        listed = min(max(0, args.list), 1000)
        request = ImportGtfs(upload=upload, name=name, encoding=args.encoding, max_listed=listed)
        return await requests.ask(client.envelope(request))


def _import_directly(args: argparse.Namespace, prog: str) -> int:
    from busfleet.commands._common import config_from
    from central.errors import CentralRunning
    from central.store.claim import offline_claim

    db = config_from(args).db
    try:
        with offline_claim(db):  # a service runs on this database that we could not ask
            return _import_into(db, args, prog)
    except CentralRunning as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def _import_into(db: str, args: argparse.Namespace, prog: str) -> int:
    from busfleet.commands._common import config_from
    from central.gtfs_import import GtfsInvalid, import_gtfs
    from central.store.pg_store import open_store
    from central.timetables import timetable_root
    from protocols.errors import GtfsError

    store = open_store(db)
    root = timetable_root(config_from(args))  # where central serves the packages from
    try:
        result = import_gtfs(
            store,
            args.path,
            max_listed=max(0, args.list),
            encoding=args.encoding,
            timetable_dir=root,
        )
    except GtfsInvalid as exc:
        _print_issues(exc.report, prog)
        print(f"{prog}: {exc.report.error_count} errors: nothing imported", file=sys.stderr)
        summary = {
            "ok": False,
            "errors": exc.report.error_count,
            "warnings": exc.report.warning_count,
        }
        print(json.dumps(summary))
        return 2
    except GtfsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        print(json.dumps({"ok": False, "errors": 1, "warnings": 0}))
        return 2
    finally:
        store.close()
    _print_issues(result.report, prog)
    print(json.dumps({"ok": True, **result.summary}))
    return 0


def message_cmd(args: argparse.Namespace) -> int:
    import time

    from protocols.requests import SendMessage

    prog = "busfleet central message"
    now = time.time()
    targets = (["all"] if args.all else []) + [f"route:{r}" for r in args.route]
    targets += [f"bus:{b}" for b in args.bus]
    try:
        valid_from = parse_when(args.valid_from, now) if args.valid_from else None
        valid_to = parse_when(args.until, now) if args.until else None
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if not targets:  # said here too: a request central would refuse anyway
        print(f"{prog}: give at least one target: --all, --route or --bus", file=sys.stderr)
        return 2
    request = SendMessage(
        text_de=args.de,
        text_en=args.en,
        priority=args.priority,
        targets=targets,
        valid_from=valid_from,
        valid_to=valid_to,
    )
    reply = ask_central(args, request, prog)
    if isinstance(reply, int):
        return reply
    buses = {str(row["bus"]): row["version"] for row in reply.tables.get("buses", [])}
    if not buses:
        print(
            f"{prog}: no bus targeted yet; buses get it when assigned to its route (or, for "
            "--all, at their next assignment)",
            file=sys.stderr,
        )
    for bus, version in buses.items():
        print(f"{bus}: desired state version {version}")
    summary: dict[str, Any] = {"id": reply.result["id"], "buses": buses, "published": True}
    print(json.dumps(summary))
    return 0


def messages_cmd(args: argparse.Namespace) -> int:
    """Asks the running central for the messages and the buses they go to now."""
    from busfleet.commands._common import print_records
    from protocols.requests import ListMessages

    return print_records(args, ListMessages(status=args.status), "busfleet central messages")


def withdraw_cmd(args: argparse.Namespace) -> int:
    from protocols.requests import WithdrawMessage

    prog = "busfleet central withdraw"
    reply = ask_central(args, WithdrawMessage(id=args.message_id), prog)
    if isinstance(reply, int):
        return reply
    print(f"{args.message_id}: withdrawn from {reply.result['buses']} buses")
    return 0
