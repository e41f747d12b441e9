"""Sending files to the running central for an import (`import-gtfs`, `media import`).

Central never reads a path a dispatcher names: the tool reads the file here, on the
dispatcher's machine, and uploads it in pieces (central/client.py `upload`); the import
request names the upload. A GTFS folder is zipped first. Long uploads say how far they are
on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from central import client
from central.client import zipped
from protocols.requests import DispatchReply, Request

__all__ = ["asker", "progress", "zipped"]

PROGRESS_FROM = 4 * 2**20  # smaller files go by too fast to be worth a line


def asker(requests: client.Requests) -> client.Asker:
    """`ask` for `client.upload` over a connection."""

    async def ask(request: Request) -> DispatchReply:
        return await requests.ask(client.envelope(request))

    return ask


def progress(prog: str, name: str) -> Callable[[int, int], None]:
    """Prints `prog: uploading NAME: 40% of 12.3 MB` on stderr at every tenth, for big files."""
    shown = [-1]

    def report(done: int, total: int) -> None:
        if total < PROGRESS_FROM:
            return
        tenth = done * 10 // total
        if tenth != shown[0]:
            shown[0] = tenth
            print(
                f"{prog}: uploading {name}: {tenth * 10}% of {total / 1e6:.1f} MB",
                file=sys.stderr,
                flush=True,
            )

    return report
