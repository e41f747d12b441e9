"""What an utterance sounds like: a recorded file where one exists, else synthesized speech.

Recorded announcements reach the bus the way ad media do (onboard/ads/): as items of the
playlist in the desired state, fetched over HTTP into the media cache and verified against
their sha256. An item is an announcement by its name: `{kind}-{ref}-{lang}.wav`, e.g.
`next_stop-de:06414:1234-de.wav` for "Nächster Halt: ..." when the bus leaves for stop
`de:06414:1234`, `approaching-...`, `terminus-...`. To be fetched but never shown as an ad it
sits in a schedule that never plays (`max_plays_per_hour = 0`). The ads runtime switches to a
playlist only once all its media are verified in the cache, so a name found in the active
playlist is a file that is there and whole.

The stop-request chime is `audio.chime` (a WAV file) or a generated two-tone chime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from onboard.ads.cache import MediaCache
from onboard.audio.api import Utterance
from onboard.audio.engine import Engine, SpeechError, clean_text
from onboard.audio.wav import Pcm, WavError, parse, tone
from protocols.ads.playlist import Playlist

__all__ = ["Part", "RecordedLibrary", "Sources", "recorded_name"]

log = logging.getLogger("busfleet.onboard.audio")

RECORDED, CHIME, NONE = "recorded", "chime", "none"  # sources besides the engines' names


def recorded_name(kind: str, ref: str, lang: str) -> str:
    """The media item name of a recorded announcement."""
    return f"{kind}-{ref}-{lang}.wav"


class MediaSource(Protocol):
    """The ads runtime as far as the audio needs it (onboard/ads/runtime.py)."""

    @property
    def active(self) -> Playlist | None: ...
    @property
    def cache(self) -> MediaCache: ...


class RecordedLibrary:
    """Recorded announcements among the active playlist's verified media."""

    def __init__(self, media: Callable[[], MediaSource | None]) -> None:
        self.media = media
        self._index: tuple[Playlist | None, dict[str, str]] = (None, {})

    def find(self, kind: str, ref: str, lang: str) -> tuple[Path, str] | None:
        """The file and sha256 of that recording, if the bus has it."""
        source = self.media()
        playlist = source.active if source else None
        if source is None or playlist is None or not ref:
            return None
        if self._index[0] is not playlist:
            self._index = (playlist, {i.name: i.media for i in playlist.items if i.name})
        sha = self._index[1].get(recorded_name(kind, ref, lang))
        path = source.cache.path(sha) if sha else None
        return (path, sha) if path is not None and sha is not None else None


@dataclass(frozen=True, slots=True)
class Part:
    """One language of an utterance as it will sound (pcm None: it could not be made)."""

    lang: str
    text: str
    source: str  # recorded | the engine's name | chime | none
    pcm: Pcm | None
    media: str = ""  # the recorded file's sha256
    error: str = ""


class Sources:
    """Turns an utterance into its parts, in the utterance's language order."""

    def __init__(
        self, engine: Engine, recorded: RecordedLibrary | None = None, chime_file: str = ""
    ) -> None:
        self.engine = engine
        self.recorded = recorded
        self.chime_file = chime_file
        self._chime: Pcm | None = None

    def render(self, utterance: Utterance) -> list[Part]:
        if utterance.kind == "chime" and not utterance.texts:
            return [Part("", "", CHIME, self.chime())]
        return [self._part(utterance, lang, text) for lang, text in utterance.texts.items()]

    def _part(self, u: Utterance, lang: str, text: str) -> Part:
        text = clean_text(text)
        found = self.recorded.find(u.kind, u.ref, lang) if self.recorded else None
        if found is not None:
            path, sha = found
            try:
                return Part(lang, text, RECORDED, parse(path.read_bytes()), media=sha)
            except (OSError, WavError) as exc:
                log.error("recorded announcement %s unusable, synthesizing: %s", path.name, exc)
        if not text:
            return Part(lang, text, NONE, None, error="empty text")
        try:
            return Part(lang, text, self.engine.name, parse(self.engine.synthesize(text, lang)))
        except (SpeechError, WavError) as exc:
            log.error("announcement not spoken (%s): %s", lang, exc)
            return Part(lang, text, NONE, None, error=str(exc)[:200])

    def chime(self) -> Pcm:
        """The stop-request chime: `audio.chime`, else two tones (made once, then kept)."""
        if self._chime is None:
            if self.chime_file:
                try:
                    self._chime = parse(Path(self.chime_file).read_bytes())
                except (OSError, WavError) as exc:
                    log.error(
                        "audio.chime %s unusable, using the built-in: %s", self.chime_file, exc
                    )
            if self._chime is None:
                self._chime = tone([(880.0, 0.35), (660.0, 0.6)])
        return self._chime
