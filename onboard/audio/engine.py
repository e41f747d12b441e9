"""Speech synthesis behind one small interface: `Engine.synthesize(text, lang) -> WAV bytes`.

The engines by name are a table like the GPS backends' (onboard/backends.py): agent.toml's
`audio.engine` picks one, and a module is imported only when it is chosen. An operator who
wants another engine (piper, a cloud voice) adds a subclass and a row here; the queue, the
outputs and the stop announcements never know which one speaks.

Text from anywhere (a stop name from the timetable, a dispatcher's live announcement) is made
safe first (`clean_text`): control characters out, whitespace collapsed, at most
`MAX_CHARS`. It reaches the engine on stdin, never as an argument and never through a shell,
so a text starting with "-" is spoken, not taken for an option.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Final

from onboard.audio.settings import AudioSection
from onboard.backends import load_backend
from onboard.errors import ConfigError, DeviceError

__all__ = ["ENGINES", "MAX_CHARS", "Engine", "EspeakNg", "SpeechError", "clean_text", "open_engine"]

log = logging.getLogger("busfleet.onboard.audio")

MAX_CHARS: Final = 500  # about 30 s of speech: longer is not an announcement
RUN_TIMEOUT_S: Final = 30.0

ENGINES: Final[dict[str, tuple[str, str]]] = {
    "espeak-ng": ("onboard.audio.engine", "EspeakNg"),  # Debian's espeak-ng: small, robotic
    "piper": ("onboard.audio.piper", "Piper"),  # piper: neural voices from .onnx models
}


class SpeechError(DeviceError):
    """The engine could not speak a text: binary missing, it failed, or it wrote no WAV."""


def clean_text(text: str, limit: int = MAX_CHARS) -> str:
    """`text` as an engine may get it: no control or format characters, single spaces, at
    most `limit` characters (cut at a word where there is one)."""
    kept = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
        for c in unicodedata.normalize("NFC", text[: limit * 4])
    )
    words = " ".join(kept.split())
    if len(words) <= limit:
        return words
    cut = words[:limit]
    return cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut


def parse_voices(spec: str, key: str = "audio.voices") -> dict[str, str]:
    """ "de=de,en=en" -> {"de": "de", "en": "en"}; ConfigError on a malformed entry."""
    voices: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        lang, sep, voice = (s.strip() for s in entry.partition("="))
        if not sep or not lang or not voice:
            raise ConfigError(f"{key}: {entry!r} is not LANG=VOICE", key=key)
        voices[lang.lower()] = voice
    return voices


class Engine(ABC):
    """A speech synthesizer: text in one language -> a WAV file's bytes."""

    name = "engine"

    @classmethod
    @abstractmethod
    def from_settings(cls, section: AudioSection) -> Engine:
        """The engine as agent.toml's [audio] describes it."""

    @abstractmethod
    def synthesize(self, text: str, lang: str) -> bytes:
        """`text` (already cleaned) spoken in `lang`, as WAV bytes; SpeechError if not."""


def open_engine(section: AudioSection, name: str | None = None) -> Engine:
    """The engine `name` (default `audio.engine`); BackendError if there is no such engine."""
    cls = load_backend("speech engine", ENGINES, name or section.engine, Engine, key="audio.engine")  # type: ignore[type-abstract]
    return cls.from_settings(section)


def run_to_wav(argv: list[str], text: str, out: Path, *, what: str) -> bytes:
    """Run an engine that reads `text` on stdin and writes the WAV file `out`; its bytes."""
    try:
        done = subprocess.run(
            argv,
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SpeechError(f"{what}: {argv[0]} is not installed ({exc.strerror})") from exc
    except subprocess.TimeoutExpired as exc:
        raise SpeechError(f"{what}: no result within {RUN_TIMEOUT_S:.0f} s") from exc
    except OSError as exc:
        raise SpeechError(f"{what}: cannot run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()[:300]
        raise SpeechError(f"{what}: {argv[0]} exited with {done.returncode}: {err}")
    try:
        data = out.read_bytes()
    except OSError as exc:
        raise SpeechError(f"{what}: {argv[0]} wrote no WAV file") from exc
    if len(data) <= 44:
        raise SpeechError(f"{what}: {argv[0]} wrote an empty WAV file")
    return data


class EspeakNg(Engine):
    """espeak-ng (Debian package espeak-ng): `espeak-ng -v VOICE -s WPM -a AMP -b 1 --stdin
    -w FILE`, the text on stdin."""

    name = "espeak-ng"

    def __init__(
        self,
        voices: dict[str, str] | None = None,
        *,
        rate_wpm: int = 150,
        amplitude: int = 100,
        binary: str = "espeak-ng",
    ) -> None:
        self.voices = voices or {"de": "de", "en": "en"}
        self.rate_wpm = max(80, min(450, rate_wpm))
        self.amplitude = max(0, min(200, amplitude))
        self.binary = binary

    @classmethod
    def from_settings(cls, section: AudioSection) -> EspeakNg:
        return cls(parse_voices(section.voices), rate_wpm=section.rate_wpm)

    def synthesize(self, text: str, lang: str) -> bytes:
        voice = self.voices.get(lang, lang)
        if not voice.replace("-", "").replace("+", "").isalnum():
            raise SpeechError(f"espeak-ng: no voice for {lang!r}")
        with tempfile.TemporaryDirectory(prefix="busfleet-speech-") as tmp:
            out = Path(tmp) / "speech.wav"
            argv = [self.binary, "-v", voice, "-s", str(self.rate_wpm), "-a", str(self.amplitude)]
            argv += ["-b", "1", "--stdin", "-w", str(out)]
            return run_to_wav(argv, clean_text(text), out, what="espeak-ng")

    def phonemes(self, text: str, lang: str) -> str:
        """espeak-ng's phoneme mnemonics for `text` (`-x -q`): what it would say."""
        voice = self.voices.get(lang, lang)
        argv = [self.binary, "-v", voice, "-b", "1", "-q", "-x", "--stdin"]
        try:
            done = subprocess.run(
                argv, input=clean_text(text).encode(), capture_output=True, timeout=RUN_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechError(f"espeak-ng: {exc}") from exc
        return done.stdout.decode("utf-8", "replace").strip()
