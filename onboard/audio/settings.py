"""agent.toml's [audio] section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AudioSection:
    enabled: bool = True  # spoken stop and live announcements
    # where sound goes: alsa (aplay) | pulse (paplay: PulseAudio or PipeWire) | file (a WAV per
    # announcement in out_dir: tests, proof) | none
    output: str = "alsa"
    out_dir: str = ""  # the file output's folder; empty: {bus.data_dir}/announcements
    # speech synthesis when no recorded file is at hand: espeak-ng | piper (onboard/audio/engine.py)
    engine: str = "espeak-ng"
    # the engine's voice per language: espeak-ng voice names, or piper .onnx model files
    voices: str = "de=de,en=en"
    rate_wpm: int = 150  # speaking rate, words per minute (espeak-ng -s)
    # loudness in percent by local time of day: "HH:MM-HH:MM=PCT,..." (a window may cross
    # midnight); outside every window: 100; empty: always 100
    volume: str = "06:00-22:00=100,22:00-06:00=50"
    chime: str = ""  # the stop-request chime (a WAV file); empty: a generated two-tone chime
    max_wait_s: float = 60.0  # a stop announcement not begun by then is stale: dropped, logged
