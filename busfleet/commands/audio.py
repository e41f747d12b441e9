"""`busfleet audio ...`: the bus's speech engine from the command line (onboard/audio/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `audio` command group."""
    group = sub.add_parser(
        "audio",
        help="spoken announcements: try the speech engine",
        description="The bus's spoken announcements (agent.toml [audio]).",
    )
    cmds = group.add_subparsers(dest="audio_command", metavar="SUBCOMMAND", required=True)
    say = cmds.add_parser(
        "say",
        help="speak a text into a WAV file, with the engine the agent uses",
        description="Speak TEXT in one language and write it as a WAV file, with the same "
        "engine code the agent speaks stop and live announcements with (espeak-ng unless "
        "--engine or the config's audio.engine names another). The text is cleaned as on the "
        "bus: control characters removed, at most 500 characters.",
    )
    say.add_argument("text", metavar="TEXT", help='what to say, e.g. "Nächster Halt: Kurhaus"')
    say.add_argument("--lang", default="de", help="language: de or en (default de)")
    say.add_argument("--out", required=True, metavar="FILE.wav", help="the WAV file to write")
    say.add_argument(
        "--engine", default=None, help="engine name (default: the config's, else espeak-ng)"
    )
    say.add_argument(
        "--config",
        default=None,
        metavar="agent.toml",
        help="take [audio] (engine, voices, rate) from it",
    )
    say.set_defaults(func=run_say)


def _fail(message: str, code: int = 1) -> int:
    print(f"busfleet audio say: {message}", file=sys.stderr)
    return code


def run_say(args: argparse.Namespace) -> int:
    from onboard.audio.engine import SpeechError, clean_text, open_engine
    from onboard.audio.settings import AudioSection
    from onboard.audio.wav import WavError, parse
    from onboard.config import ConfigError, load_config

    try:
        section = load_config(args.config).audio if args.config else AudioSection()
        engine = open_engine(section, args.engine)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    text = clean_text(args.text)
    if not text:
        return _fail("nothing to say: the text is empty", 2)
    lang = args.lang.strip().lower()
    if lang not in ("de", "en"):
        return _fail(f"--lang {args.lang!r}: give de or en", 2)
    try:
        wav = engine.synthesize(text, lang)
        seconds = parse(wav).seconds
    except (SpeechError, WavError) as exc:
        return _fail(str(exc))
    out = Path(args.out)
    try:
        out.write_bytes(wav)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc}")
    print(f"{out}: {seconds:.2f} s, {engine.name}, {lang}")
    return 0
