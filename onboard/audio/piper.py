"""piper (https://github.com/rhasspy/piper) as a speech engine: neural voices, one .onnx model
per language (`audio.voices = "de=/opt/voices/de_DE-thorsten-medium.onnx,en=..."`).

`piper --model MODEL --output_file FILE` with the text on stdin. Not installed by default: an
operator who wants it installs piper and names it in `audio.engine`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from onboard.audio.engine import Engine, SpeechError, clean_text, parse_voices, run_to_wav
from onboard.audio.settings import AudioSection

__all__ = ["Piper"]


class Piper(Engine):
    name = "piper"

    def __init__(self, models: dict[str, str], *, binary: str = "piper") -> None:
        self.models = models
        self.binary = binary

    @classmethod
    def from_settings(cls, section: AudioSection) -> Piper:
        return cls(parse_voices(section.voices))

    def synthesize(self, text: str, lang: str) -> bytes:
        model = self.models.get(lang)
        if not model or not model.endswith(".onnx"):
            raise SpeechError(f"piper: no .onnx model for {lang!r} in audio.voices")
        with tempfile.TemporaryDirectory(prefix="busfleet-speech-") as tmp:
            out = Path(tmp) / "speech.wav"
            argv = [self.binary, "--model", model, "--output_file", str(out)]
            return run_to_wav(argv, clean_text(text), out, what="piper")
