"""`busfleet audio say`: the real console script writes the speech the agent's engine makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from onboard.audio.engine import EspeakNg
from onboard.audio.wav import parse, rms

BUSFLEET = Path(sys.executable).parent / "busfleet"


def _say(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUSFLEET), "audio", "say", *args], capture_output=True, text=True, timeout=60
    )


def test_busfleet_audio_say_writes_that_speech_with_the_agents_engine(tmp_path: Path) -> None:
    out = tmp_path / "kurhaus.wav"
    text = "Nächster Halt: Bad Homburg Kurhaus"
    done = _say(text, "--lang", "de", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out}: ") and "espeak-ng, de" in done.stdout
    pcm = parse(out.read_bytes())
    assert pcm.rate == 22_050 and 1.5 < pcm.seconds < 6.0 and rms(pcm) > 0.02
    assert out.read_bytes() == EspeakNg().synthesize(text, "de")  # the agent's engine, same bytes
    english = tmp_path / "en.wav"
    assert (
        _say(text, "--lang", "en", "--out", str(english), "--engine", "espeak-ng").returncode == 0
    )
    assert parse(english.read_bytes()).samples != pcm.samples


def test_busfleet_audio_say_says_clearly_what_is_wrong(tmp_path: Path) -> None:
    out = str(tmp_path / "x.wav")
    cases = [
        (["Hallo", "--engine", "festival", "--out", out], 2, "audio.engine 'festival': unknown"),
        (["Hallo", "--engine", "piper", "--out", out], 1, "piper: no .onnx model"),
        (["\x01\x02 \t", "--out", out], 2, "nothing to say"),
        (["Hallo", "--lang", "fr", "--out", out], 2, "give de or en"),
        (["Hallo", "--out", str(tmp_path / "no" / "dir.wav")], 1, "cannot write"),
    ]
    for args, code, message in cases:
        done = _say(*args)
        assert (done.returncode, done.stdout) == (code, ""), done.stderr
        assert done.stderr.startswith("busfleet audio say: ") and message in done.stderr
        assert "Traceback" not in done.stderr
    assert not Path(out).exists()
    # text that looks like options, after "--", is spoken
    done = _say("--out", out, "--", "-v en --stdout")
    assert done.returncode == 0 and rms(parse(Path(out).read_bytes())) > 0.02
