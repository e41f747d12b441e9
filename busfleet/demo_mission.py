"""The demo's working day: ads on every bus, a passenger message, a diversion, and the pages of
bus-01 that a newcomer can open.

All of it asked of the running central as a dispatcher's tools ask it (central/client.py, the
same typed requests as `busfleet central media import`, `playlist assign`, `message` and
`divert create`), so it takes the production path: media library, playlist, desired state,
download on the bus, proof of play back to central. What it made is then read from the
outside: the buses' passenger displays (`display_figures`), as passengers see them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from busfleet.demo_ads import AD_SECONDS, demo_ads
from central import client
from protocols.gtfs.feed import Feed
from protocols.requests import (
    AssignPlaylist,
    CreateDiversion,
    DispatchReply,
    ImportMedia,
    Request,
    SavePlaylist,
    SendMessage,
    UploadedFile,
)

__all__ = [
    "DIVERSION_AFTER_S",
    "PAGE_NAMES",
    "PLAYLIST",
    "BusPorts",
    "Mission",
    "MissionRefused",
    "answering",
    "display_figures",
    "pick_skipped_stop",
    "stage_mission",
    "urls",
]

PLAYLIST = "demo-ads"
DIVERSION_AFTER_S = 60.0  # the diversion starts about a minute into the demo
DIVERSION_FOR_S = 3600.0
SKIP_AHEAD_M = 600.0  # the skipped stop lies at least this far ahead of where bus-01 starts
MESSAGE_DE = "Willkommen an Bord! Heute Abend fahren die Busse zum Nachtmarkt bis 23 Uhr."
MESSAGE_EN = "Welcome aboard! Tonight buses run to the Night Markets until 11 pm."
PROBE_TIMEOUT_S = 2.0
PAGE_NAMES = {"display": "passenger display", "driver": "driver terminal", "portal": "Wi-Fi portal"}

Ask = Callable[[Request], Awaitable[DispatchReply]]


class MissionRefused(Exception):
    """Central refused a step of the demo's day; says which and why."""


@dataclass(frozen=True, slots=True)
class BusPorts:
    """Where a simulated bus serves its pages on 127.0.0.1 (portal None: it runs none)."""

    display: int
    driver: int
    portal: int | None = None


@dataclass(frozen=True, slots=True)
class Mission:
    """What the demo asked of central: the ids it got back."""

    media: tuple[str, ...]  # sha256 of the ads
    message_id: str
    diversion_id: str
    diversion_route: str
    diversion_from: float  # unix time the diversion starts


def urls(ports: BusPorts) -> dict[str, str]:
    """The pages of one bus, as a browser on this machine opens them."""
    out = {
        "display": f"http://127.0.0.1:{ports.display}/display/landscape",
        "driver": f"http://127.0.0.1:{ports.driver}/driver",
    }
    if ports.portal is not None:
        out["portal"] = f"http://127.0.0.1:{ports.portal}/"
    return out


def pick_skipped_stop(feed: Feed, trip_id: str, start_m: float) -> str:
    """A stop of the trip at least SKIP_AHEAD_M ahead of `start_m`, not its last (so the
    diversion skips a stop the bus has yet to reach); the last but one if none is."""
    _, placed = feed.trip_path(trip_id)
    inner = placed[:-1] or placed
    for stop, dist in inner:
        if dist >= start_m + SKIP_AHEAD_M:
            return stop.stop_id
    return inner[-1][0].stop_id


async def _checked(ask: Ask, request: Request) -> DispatchReply:
    reply = await ask(request)
    if not reply.ok:
        raise MissionRefused(f"central refused {type(request).__name__}: {reply.error}")
    return reply


async def stage_mission(
    ask: Ask,
    workdir: Path,
    buses: list[str],
    *,
    feed: Feed,
    trip_id: str,
    start_m: float,
    now: float,
) -> Mission:
    """Upload the generated ads, make them a playlist on every bus, send a passenger message
    to all buses and a diversion of the route of `trip_id` (bus-01's) from DIVERSION_AFTER_S
    after `now`, skipping a stop ahead of `start_m`. MissionRefused if central refuses."""
    ads_dir = workdir / "ads"
    ads_dir.mkdir(parents=True, exist_ok=True)
    uploaded = []
    for name, data in demo_ads().items():
        (ads_dir / name).write_bytes(data)
        upload = await client.upload(ask, ads_dir / name)
        uploaded.append(UploadedFile(upload=upload, name=name))
    reply = await _checked(ask, ImportMedia(files=uploaded))
    rejected = reply.tables.get("rejected", [])
    if rejected:
        raise MissionRefused(f"central's media library refused the demo's ads: {rejected}")
    media = tuple(str(row["sha256"]) for row in reply.tables.get("media", []))
    await _checked(ask, SavePlaylist(id=PLAYLIST, media=list(media), seconds=AD_SECONDS))
    for bus in buses:
        await _checked(ask, AssignPlaylist(bus=bus, playlist=PLAYLIST))
    sent = await _checked(
        ask, SendMessage(text_de=MESSAGE_DE, text_en=MESSAGE_EN, targets=["all"], priority=1)
    )
    route = feed.trips[trip_id].route_id
    skipped = pick_skipped_stop(feed, trip_id, start_m)
    name = feed.stops[skipped].name
    starts = now + DIVERSION_AFTER_S
    diverted = await _checked(
        ask,
        CreateDiversion(
            route=route,
            skip=[skipped],
            valid_from=starts,
            valid_to=starts + DIVERSION_FOR_S,
            notice_de=f"Umleitung: die Haltestelle {name} entfällt",
            notice_en=f"Diversion: no service at the {name} stop",
        ),
    )
    return Mission(
        media=media,
        message_id=str(sent.result["id"]),
        diversion_id=str(diverted.result["id"]),
        diversion_route=route,
        diversion_from=starts,
    )


def answering(url: str, timeout_s: float) -> bool:
    """Whether `url` answers (any HTTP status) within `timeout_s`, asked once a second."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)


def _display_state(port: int) -> dict[str, object] | None:
    """The passenger display's state as its pages get it (None if it does not answer)."""
    url = f"http://127.0.0.1:{port}/display/state.json"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            body = json.load(response)  # {"version": N, "state": {...}} (onboard/web/live.py)
    except (OSError, ValueError):
        return None
    state = body.get("state") if isinstance(body, dict) else None
    return state if isinstance(state, dict) else None


def display_figures(ports: Mapping[str, BusPorts], message_id: str | None) -> dict[str, int]:
    """How many buses' passenger displays show the demo's message now, and how many show a
    diversion notice now (read from each display's live state)."""
    shown = diverted = 0
    for bus_ports in ports.values():
        state = _display_state(bus_ports.display)
        if state is None:
            continue
        announcements = state.get("announcements")
        if message_id and isinstance(announcements, list):
            ids = {a.get("id") for a in announcements if isinstance(a, dict)}
            shown += message_id in ids
        diverted += bool(state.get("diversion"))
    return {"messages_shown": shown, "diversions_active": diverted}
