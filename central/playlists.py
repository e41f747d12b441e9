"""Playlists at central: built from an operator's file, stored with revisions, pushed to buses.

An operator writes a playlist as TOML or JSON with items that name their media by name or
hash; `build_playlist` resolves each against the library (type, MIME and size come from the
library, never from the operator) and validates the whole document. A stored playlist gets a
new revision whenever its content changes. Assigning it to a bus writes the bus's next
desired state with the playlist inside (`DesiredState.ads`): the bus converges to it whenever
it is connected, like any other desired state.
"""

from __future__ import annotations

import time
import tomllib
from typing import Any

import msgspec

from central.config import CentralConfig
from central.desired import update_desired
from central.errors import Refused
from central.media import MediaLibrary
from central.store import ads as ads_db
from central.store.db import CentralStore
from protocols import codec
from protocols.ads.playlist import Playlist, decode_playlist, encode_playlist, playlist_from_object
from protocols.errors import CodecError
from protocols.requests import PLAYLIST_SOURCE_CHARS
from protocols.schemas import DesiredState

MAX_SOURCE_CHARS = PLAYLIST_SOURCE_CHARS  # a playlist file; a real one is a few kB


class PlaylistError(Refused):
    """A playlist that cannot be built, stored or assigned; the message says what to fix."""


def parse_source(text: str, fmt: str, name: str = "the playlist") -> dict[str, Any]:
    """An operator's playlist from its text: TOML (`fmt` "toml") or JSON (anything else).
    The tool on the dispatcher's machine read the file; central never reads a path."""
    if len(text) > MAX_SOURCE_CHARS:
        raise PlaylistError(f"{name}: longer than {MAX_SOURCE_CHARS} characters")
    try:
        raw: Any = tomllib.loads(text) if fmt == "toml" else msgspec.json.decode(text)
    except (tomllib.TOMLDecodeError, msgspec.DecodeError) as exc:
        raise PlaylistError(f"{name}: {exc}") from exc
    except RecursionError:
        raise PlaylistError(f"{name}: nested too deeply") from None
    if not isinstance(raw, dict):
        raise PlaylistError(f"{name}: a playlist is a table/object")
    return raw


def build_playlist(library: MediaLibrary, source: dict[str, Any], media_url: str = "") -> Playlist:
    """Resolve the items' media against the library and validate the whole playlist."""
    raw = dict(source)
    items = []
    for n, entry in enumerate(raw.get("items") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("media"), str):
            raise PlaylistError(f"items[{n}]: needs a media name or hash")
        info = library.find(entry["media"])
        if info is None:
            raise PlaylistError(f"items[{n}]: no single media file matches {entry['media']!r}")
        name = entry.get("name") or info.name
        items.append(
            {**entry, "media": info.sha256, "kind": info.kind, "mime": info.mime,
             "size": info.size, "name": name}
        )  # fmt: skip
    raw["items"] = items
    raw.setdefault("schedules", [])
    if media_url:
        raw["media_url"] = media_url
    try:
        return playlist_from_object(raw)
    except CodecError as exc:
        raise PlaylistError(str(exc)) from exc


def save_playlist(store: CentralStore, playlist: Playlist) -> Playlist:
    """Store a playlist; its revision grows if its content changed. Returns what is stored."""
    current = get_playlist(store, playlist.id)
    if current is not None:
        same = msgspec.structs.replace(playlist, revision=current.revision)
        if same == current:
            return current
        playlist = msgspec.structs.replace(playlist, revision=current.revision + 1)
    else:
        playlist = msgspec.structs.replace(playlist, revision=1)
    body = encode_playlist(playlist)
    ads_db.save_playlist_body(store, playlist.id, playlist.revision, body, time.time())
    return playlist


def get_playlist(store: CentralStore, playlist_id: str) -> Playlist | None:
    body = ads_db.playlist_body(store, playlist_id)
    return None if body is None else decode_playlist(body)


def list_playlists(store: CentralStore) -> list[Playlist]:
    return [decode_playlist(body) for body in ads_db.playlist_bodies(store)]


def buses_with(store: CentralStore, playlist_id: str) -> list[str]:
    """Buses whose desired state names this playlist."""
    out = []
    for bus, body in store.all_desired():
        try:
            desired = codec.decode(DesiredState, body)
        except CodecError:
            continue
        if desired.playlist == playlist_id:
            out.append(bus)
    return sorted(out)


def desired_with_playlist(
    store: CentralStore, bus: str, playlist: Playlist | None
) -> tuple[int, bytes]:
    """Store the bus's next desired state with this playlist (None: no ads). Returns it."""

    def change(doc: DesiredState) -> DesiredState:
        new = msgspec.structs.replace(doc, playlist=playlist.id if playlist else None, ads=playlist)
        size = len(codec.encode(new))
        if size > codec.MAX_PAYLOAD - 1000:  # leave room for the version and messages to come
            raise PlaylistError(
                f"the desired state would be {size} bytes, over {codec.MAX_PAYLOAD}: split the"
                " playlist"
            )
        return new

    return update_desired(store, bus, change)


def media_url_for(config: CentralConfig) -> str:
    """Where buses download media: `media_url`, else central's own HTTP server, else ""."""
    if config.media_url:
        return config.media_url
    if config.http_port:
        return f"http://{config.http_host}:{config.http_port}/media"
    return ""
