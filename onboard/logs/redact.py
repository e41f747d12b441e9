"""Secrets out of log text: applied when a line is written to the agent's log file and again
when it is read for central (a file written before, by hand, or by an older agent).

What goes: the bus's MQTT password (from `mqtt.password_file`) wherever it appears, values
that follow a key like password=, passwd:, token=, secret=, api_key= (quoted or not),
Authorization header values and Bearer tokens, the password of a URL (`user:pw@host`), and
PEM private key blocks whole. The exact secrets go last, replaced by a mark made of
characters the secret does not contain: no mix of the mark and its neighbours can spell the
secret again (tests/test_log_redaction.py holds that with hypothesis).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["MARK", "Redactor", "secrets_of"]

log = logging.getLogger("busfleet.onboard.logs")

MARK = "[REDACTED]"
# the key's own name from its keyword on (what stands before it, mqtt_ say, is left alone)
_KEY = r"(?:passw(?:or)?d|passwd|pwd|token|secret|api[_-]?key|access[_-]?key|credential)[\w.-]*"
_VALUE = r"""(?:"[^"\n]*"?|'[^'\n]*'?|[^\s"']\S*)"""
_PATTERNS = (
    # PEM private keys: the whole block, to its END line or the end of the text
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        MARK,
    ),
    # the tail of a block whose BEGIN line is elsewhere (cut off, another record)
    (re.compile(r"\A.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.DOTALL), MARK),
    # Authorization: Bearer abc / "authorization": "Basic abc"
    (
        re.compile(
            r"""(authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|digest|token)\s+)?[^\s"',;]*""",
            re.IGNORECASE,
        ),
        rf"\g<1>{MARK}",
    ),
    (re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\g<1>{MARK}"),
    # password=abc, "token": "abc", secret: 'a b', mqtt_password_file=... (a path: harmless)
    (re.compile(rf"""({_KEY}["']?\s*[:=]\s*){_VALUE}""", re.IGNORECASE), rf"\g<1>{MARK}"),
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(@)", re.IGNORECASE), rf"\1{MARK}\2"),
)


# Every pattern above needs one of these words: a line without any (most) skips them all.
_TRIGGER = re.compile(r"pass|pwd|token|secret|key|credential|authorization|bearer|://", re.I)


class Redactor:
    """Takes secrets out of text; `secrets` are exact strings (the MQTT password)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first: a secret that contains another goes whole
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._mark = _mark_for("".join(self.secrets))  # one mark for all: see the docstring

    def __call__(self, text: str) -> str:
        if _TRIGGER.search(text):
            for pattern, replacement in _PATTERNS:
                text = pattern.sub(replacement, text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, self._mark)
        return text


def _mark_for(secret: str) -> str:
    """MARK, or a mark of a character no secret contains (a replacement can then never be
    part of a new occurrence of a secret)."""
    if not set(MARK) & set(secret):
        return MARK
    for candidate in "#*~^%!?█░▒":
        if candidate not in secret:
            return candidate * 3
    code = 0x2500
    while chr(code) in secret:
        code += 1
    return chr(code) * 3


def secrets_of(password_file: str) -> list[str]:
    """The exact secrets of the agent's configuration: the MQTT password (the file's text,
    stripped, as the link reads it). An unreadable file gives none (the link says so)."""
    if not password_file:
        return []
    try:
        raw = Path(password_file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        log.warning("log redaction: cannot read %s: %s", password_file, exc)
        return []
    return [raw.strip()] if raw.strip() else []
