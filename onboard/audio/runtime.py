"""The bus's audio as the agent runs it: one queue, one playback task, every announcement logged.

`AudioRuntime` is the agent's `Speaker` (onboard/audio/api.py). `say` queues an utterance; the
one task in `run` takes them in priority order and for each: drops it if stale, makes its sound
(onboard/audio/sources.py: recorded file, else the engine, in a thread), applies the volume of
the time of day, calls `on_start` (the part that asked shows it now: two senses), plays it on
the output and records an `announcement` event per language part {n, kind, text, lang,
source, ref, out} into the outbox so the operator can prove what was said, when, from where.
A sound that cannot be made or played is logged (the event says source "none" and the
error); the announcement was still shown. Only one sound plays at a time.

`NoAudio` is the Speaker of a bus without audio (`audio.enabled = false`): it calls `on_start`
at once, so a live announcement is still shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from onboard.audio.api import OnStart, Utterance
from onboard.audio.engine import open_engine
from onboard.audio.outputs import Output, OutputError, open_output
from onboard.audio.queue import AnnouncementQueue, Queued
from onboard.audio.settings import AudioSection
from onboard.audio.sources import CHIME, NONE, MediaSource, Part, RecordedLibrary, Sources
from onboard.audio.volume import VolumeSchedule
from onboard.audio.wav import join, scale
from protocols.schemas import Scalar

__all__ = ["AudioRuntime", "NoAudio", "RecordEvent", "open_audio"]

log = logging.getLogger("busfleet.onboard.audio")

RecordEvent = Callable[[str, dict[str, Scalar]], object]
EVENT = "announcement"
DROPPED = "announcement_dropped"


class NoAudio:
    """A bus without audio: nothing is spoken, `on_start` is called at once."""

    def say(self, utterance: Utterance, on_start: OnStart | None = None) -> None:
        if on_start is not None:
            on_start(utterance)


class AudioRuntime:
    """One queue, one player (see the module docstring)."""

    def __init__(
        self,
        sources: Sources,
        output: Output,
        record: RecordEvent,
        *,
        volume: VolumeSchedule | None = None,
        max_wait_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        local_time: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.sources = sources
        self.output = output
        self.record = record
        self.volume = volume or VolumeSchedule()
        self.queue = AnnouncementQueue(max_wait_s=max_wait_s)
        self.clock = clock
        self.local_time = local_time
        self.played = 0  # announcements begun (the `n` of their events)
        self.dropped = 0
        self.failed = 0  # parts that could not be made or played
        self.playing: Utterance | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set by the playback task when nothing plays or waits

    @classmethod
    def from_settings(
        cls,
        section: AudioSection,
        data_dir: str | Path,
        record: RecordEvent,
        media: Callable[[], MediaSource | None] | None = None,
    ) -> AudioRuntime:
        """The runtime agent.toml's [audio] describes; ConfigError for a wrong setting."""
        out_dir = Path(section.out_dir or Path(data_dir) / "announcements")
        return cls(
            Sources(
                open_engine(section),
                RecordedLibrary(media) if media else None,
                chime_file=section.chime,
            ),
            open_output(section.output, out_dir),
            record,
            volume=VolumeSchedule.parse(section.volume),
            max_wait_s=max(1.0, section.max_wait_s),
        )

    # -- Speaker --------------------------------------------------------------------------
    def say(self, utterance: Utterance, on_start: OnStart | None = None) -> None:
        dropped = self.queue.put(utterance, on_start, self.clock())
        if dropped is not None:
            self._drop(dropped, "queue full")
        self._idle.clear()
        self._wake.set()

    @property
    def idle(self) -> bool:
        """Nothing plays and nothing waits."""
        return self.playing is None and not len(self.queue)

    async def wait_idle(self) -> None:
        """Until the playback task has played (or dropped) everything queued so far."""
        await self._idle.wait()

    # -- the one playback task ------------------------------------------------------------
    async def run(self) -> None:
        while True:
            item, stale = self.queue.pop(self.clock())
            for old in stale:
                self._drop(old, "stale")
            if item is None:
                self._wake.clear()
                self._idle.set()
                await self._wake.wait()
                continue
            self.playing = item.utterance
            try:
                await self._play(item)
            finally:
                self.playing = None

    async def _play(self, item: Queued) -> None:
        u = item.utterance
        parts = await asyncio.to_thread(self.sources.render, u)
        sounds = [p.pcm for p in parts if p.pcm is not None]
        self.played += 1
        n = self.played
        if item.on_start is not None:
            try:
                item.on_start(u)
            except Exception:  # the shower's bug must not stop the bus's audio
                log.exception("on_start of a %s announcement failed", u.kind)
        out, error = "", ""
        if sounds:
            pct = self.volume.percent_at(self.local_time().time())
            pcm = scale(join(sounds), pct)
            try:
                out = await self.output.play(pcm.wav(), pcm.seconds, u.kind)
            except OutputError as exc:
                log.error("announcement %d not played: %s", n, exc)
                error = str(exc)[:200]
        for part in parts:
            self._log(n, u, part, out, part.error or error)

    def _log(self, n: int, u: Utterance, part: Part, out: str, error: str) -> None:
        source = NONE if error and part.source != CHIME else part.source
        data: dict[str, Scalar] = {
            "n": n,
            "kind": u.kind,
            "text": part.text,
            "lang": part.lang,
            "source": source,
            "ref": u.ref,
        }
        if part.media:
            data["media"] = part.media
        if out:
            data["out"] = out
        if error:
            self.failed += 1
            data["error"] = error
        self.record(EVENT, data)

    def _drop(self, item: Queued, why: str) -> None:
        self.dropped += 1
        u = item.utterance
        log.info("announcement dropped (%s): %s %s", why, u.kind, u.ref)
        first = next(iter(u.texts.values()), "")
        self.record(DROPPED, {"kind": u.kind, "ref": u.ref, "text": first[:200], "why": why})


def open_audio(
    section: AudioSection,
    data_dir: str | Path,
    record: RecordEvent,
    media: Callable[[], MediaSource | None] | None = None,
) -> AudioRuntime | NoAudio:
    """The agent's Speaker: the runtime, or NoAudio when `audio.enabled` is false."""
    if not section.enabled:
        return NoAudio()
    return AudioRuntime.from_settings(section, data_dir, record, media)
