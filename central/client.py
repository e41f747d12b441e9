"""Asking the running central service: request/reply over MQTT, for the dashboard and the CLI.

A request (protocols/requests.py) goes to `busfleet/v1/dispatch/{user}/request` in an envelope
with an id; central carries it out and answers on `.../{user}/reply` with the same id. `user`
is the broker account (`account`): deploy/'s ACL lets an account ask under its own name only
and read only its own replies, so the name is proven, not said. The
service is the only writer of desired state and the only publisher to buses: the dashboard
and every CLI tool ask it, none of them opens the database to change it.

How a client knows that a central runs: every service worker keeps a retained presence on
`busfleet/v1/central/presence/{client_id}` (online on connect, offline as its last will and
on a clean stop). A client subscribes to all of them and asks only if one says online within
`PRESENCE_WAIT_S` (retained messages arrive right after the subscription); then it waits for
the answer up to a timeout. Either way, nobody answering is `NoCentral`, one clear sentence.

A file for an import (a GTFS zip, a media file) is sent, not named: `upload` reads it here,
on the dispatcher's machine, and sends it in pieces that central stages (central/uploads.py);
the import request then names the upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiomqtt
import msgspec

from central import mqtt
from central.config import CentralConfig
from central.errors import NoAnswer, NoCentral, Refused, Unavailable
from central.operator_files import NotAFile, check_regular
from protocols import codec, topics
from protocols.errors import ProtocolError
from protocols.requests import (
    MAX_UPLOAD_BYTES,
    UPLOAD_CHUNK_BYTES,
    CentralPresence,
    DispatchReply,
    DispatchRequest,
    Request,
    Upload,
)

__all__ = [
    "PRESENCE_WAIT_S",
    "REPLY_TIMEOUT_S",
    "Requests",
    "UploadFailed",
    "account",
    "ask",
    "connect",
    "envelope",
    "upload",
    "zipped",
]

log = logging.getLogger("busfleet.central.client")

PRESENCE_WAIT_S = 3.0  # retained presence comes at once; a little slack for a busy broker
REPLY_TIMEOUT_S = 120.0  # a GTFS import or a media import of big files takes a while


def account(config: CentralConfig, name: str | None = None) -> str:
    """The name a dispatcher asks under: its broker account (`mqtt_username`), which the ACL
    ties to the request topic; `name` only where the broker has no accounts (development)."""
    return config.mqtt_username or name or "dispatcher"


def envelope(request: Request, now: float | None = None) -> DispatchRequest:
    """The request with a fresh id, ready to send."""
    return DispatchRequest(
        id=uuid.uuid4().hex[:16], t=time.time() if now is None else now, request=request
    )


class Requests:
    """Requests in flight over one connected aiomqtt client that someone else reads.

    The reader hands every message to `feed`; replies to this user resolve the matching
    `ask`, presences keep `online` (the central workers up now).
    """

    def __init__(self, client: aiomqtt.Client, user: str) -> None:
        self.client = client
        self.user = topics.check_user(user)
        self.reply_topic = topics.dispatch_reply(self.user)
        self.online: set[str] = set()
        self.present = asyncio.Event()  # some central worker is online
        self._waiting: dict[str, asyncio.Future[DispatchReply]] = {}

    async def subscribe(self) -> None:
        """Replies to this user and central's presence (retained: they come at once)."""
        await self.client.subscribe(self.reply_topic, qos=1)
        await self.client.subscribe(topics.all_central_presence(), qos=1)

    def feed(self, topic: str, payload: bytes) -> DispatchReply | None:
        """Take in one message; returns it if it is a reply to this user, else None."""
        try:
            if topic == self.reply_topic:
                reply = codec.decode(DispatchReply, payload)
                future = self._waiting.pop(reply.id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
                return reply
            if topics.matches(topics.all_central_presence(), topic):
                self._presence(topic, payload)
        except ProtocolError as exc:
            log.warning("ignored a bad message on %s: %s", topic, exc)
        return None

    def _presence(self, topic: str, payload: bytes) -> None:
        name = topic.rsplit("/", 1)[-1]
        if payload and codec.decode(CentralPresence, payload).online:
            self.online.add(name)
        else:
            self.online.discard(name)
        if self.online:
            self.present.set()
        else:
            self.present.clear()

    async def send(self, request: DispatchRequest) -> None:
        """Publish a request; its reply comes through `feed`."""
        topic = topics.dispatch_request(self.user)
        signed = msgspec.structs.replace(request, by=self.user)  # central checks it: the topic's
        await self.client.publish(topic, codec.encode(signed), qos=1)

    async def ask(
        self, request: DispatchRequest, timeout_s: float = REPLY_TIMEOUT_S
    ) -> DispatchReply:
        """Send a request and wait for its reply; NoAnswer if none comes in time."""
        future: asyncio.Future[DispatchReply] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = future
        try:
            await self.send(request)
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise NoAnswer(f"central did not answer within {timeout_s:.0f} s") from None
        finally:
            self._waiting.pop(request.id, None)


async def _read(client: aiomqtt.Client, requests: Requests) -> None:
    async for message in client.messages:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        requests.feed(message.topic.value, payload)


@contextlib.asynccontextmanager
async def connect(
    config: CentralConfig, user: str | None = None, *, presence_wait_s: float = PRESENCE_WAIT_S
) -> AsyncIterator[Requests]:
    """A connection of its own to ask central (CLI tools), as `account(config, user)`.
    Unavailable if the broker cannot be reached, NoCentral if no central worker is online.

    On deploy/'s broker the client id is the account: a tool and a dashboard that run at
    once need accounts of their own (one would knock the other off)."""
    where = f"{config.mqtt_host}:{config.mqtt_port}"
    identifier = f"{config.identity}-ask-{uuid.uuid4().hex[:8]}"  # unique where not forced
    try:
        async with mqtt.client(config, identifier=identifier) as client:
            requests = Requests(client, account(config, user))
            # Not a TaskGroup: the caller's body runs inside, and its errors must come out
            # as they are, not wrapped in an ExceptionGroup. The reader ends with the block.
            reader = asyncio.create_task(_read(client, requests), name="central-client-read")
            try:
                await requests.subscribe()
                try:
                    async with asyncio.timeout(presence_wait_s):
                        await requests.present.wait()
                except TimeoutError:
                    raise NoCentral(f"no central is running (none online at {where})") from None
                yield requests
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await reader
    except aiomqtt.MqttError as exc:
        raise Unavailable(f"cannot reach the broker at {where}: {exc}") from None


async def ask(
    config: CentralConfig,
    request: Request,
    *,
    user: str | None = None,
    timeout_s: float = REPLY_TIMEOUT_S,
    presence_wait_s: float = PRESENCE_WAIT_S,
) -> DispatchReply:
    """Ask central once over a short connection; its reply (ok or refused).

    Raises Unavailable (no broker), NoCentral (no central online) or NoAnswer (no answer in
    time: it may still have done it).
    """
    async with connect(config, user, presence_wait_s=presence_wait_s) as requests:
        return await requests.ask(envelope(request), timeout_s)


class UploadFailed(Refused):
    """Central refused a piece of an upload (or failed on it: `failed`)."""

    def __init__(self, message: str, *, failed: bool = False) -> None:
        super().__init__(message)
        self.failed = failed


Asker = Callable[[Request], Awaitable[DispatchReply]]
Progress = Callable[[int, int], None]


async def upload(
    ask: Asker,
    path: str | Path,
    *,
    limit: int = MAX_UPLOAD_BYTES,
    progress: Progress | None = None,
) -> str:
    """Send a regular file to central in pieces, one at a time; its upload id for an import.

    `ask` sends a request and waits for its reply (`Requests.ask` with an envelope, or the
    dashboard's). Never reads more than the file's size when opened, nor more than `limit`:
    NotAFile for a FIFO, a device (/dev/zero never ends), a folder, a file too big, or one
    that changes while it is read; UploadFailed when central refuses a piece.
    """
    path = check_regular(path)  # before opening: opening a FIFO would block
    upload_id = uuid.uuid4().hex
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):  # swapped since the check
                raise NotAFile(f"{path} is not a regular file")
            total = info.st_size
            if total > limit:
                raise NotAFile(f"{path} is larger than {limit} bytes")
            offset = 0
            while True:
                want = min(UPLOAD_CHUNK_BYTES, total - offset)
                data = f.read(want)
                if len(data) < want:
                    raise NotAFile(f"{path} became shorter while it was read")
                digest.update(data)
                last = offset + want == total
                if last and f.read(1):
                    raise NotAFile(f"{path} grew while it was read")
                piece = Upload(
                    id=upload_id,
                    offset=offset,
                    total=total,
                    data=data,
                    sha256=digest.hexdigest() if last else None,
                )
                reply = await ask(piece)
                if not reply.ok:
                    raise UploadFailed(reply.error, failed=reply.failed)
                offset += want
                if progress is not None:
                    progress(offset, total)
                if last:
                    return upload_id
    except OSError as exc:
        raise NotAFile(f"cannot read {path}: {exc.strerror}") from exc


@contextlib.contextmanager
def zipped(path: str | Path) -> Iterator[Path]:
    """A GTFS feed as one file to upload: a zip as it is, or a folder's regular .txt files
    zipped in a temporary file (deleted after the block)."""
    path = Path(path)
    if not path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="busfleet-gtfs-") as tmp:
        archive = Path(tmp) / "feed.zip"
        try:
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for member in sorted(path.iterdir()):
                    if member.suffix == ".txt" and member.is_file():  # not a FIFO or a device
                        zf.write(member, member.name)
        except OSError as exc:
            raise NotAFile(f"cannot read {path}: {exc.strerror or exc}") from exc
        yield archive
