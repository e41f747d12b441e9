"""Passenger feedback: validation, a per-client rate limit and one-time form tokens.

Feedback goes to central as plain text through the agent's outbox (which sends it exactly
once); this module makes sure that what goes is bounded and clean, and that one submitted
form becomes one message even when the phone sends the POST twice (a reload, a retry on a
flaky Wi-Fi): every rendered form carries a token that is good for one message.
Pages escape everything they show (pages.py); central must escape it again where it shows
it, since the text is whatever a passenger typed.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

CATEGORIES = ("cleanliness", "punctuality", "driving", "wifi", "accessibility", "other")
MAX_TEXT = 1000  # characters, after clean-up
MAX_TRACKED = 2000  # clients and tokens remembered; the oldest are forgotten beyond

FeedbackSink = Callable[[str, str], None]  # (category, text); "" when no category was chosen


class FeedbackRejected(ValueError):
    """The form cannot be sent; `reason` is a key for the page's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Feedback:
    category: str
    text: str


def clean_text(raw: str) -> str:
    """NFC, no control or format characters except newlines, trimmed, blank runs collapsed."""
    text = unicodedata.normalize("NFC", raw.replace("\r\n", "\n").replace("\r", "\n"))
    # Cc and Cf include NUL, escapes and the bidi overrides that disguise text on a screen.
    kept = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf"))
    lines = [" ".join(line.split()) for line in kept.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def validate(category: str, text: str) -> Feedback:
    """A clean Feedback, or FeedbackRejected("empty" | "too_long" | "category")."""
    category = category.strip()
    if category and category not in CATEGORIES:
        raise FeedbackRejected("category")
    cleaned = clean_text(text)
    if not cleaned:
        raise FeedbackRejected("empty")
    if len(cleaned) > MAX_TEXT:
        raise FeedbackRejected("too_long")
    return Feedback(category, cleaned)


class RateLimit:
    """At most `per_hour` accepted messages per client in any sliding hour."""

    def __init__(self, per_hour: int, window_s: float = 3600.0) -> None:
        self.per_hour = per_hour
        self.window_s = window_s
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allowed(self, client: str, now: float) -> bool:
        times = self._seen.get(client)
        if times is None:
            return self.per_hour > 0
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return len(times) < self.per_hour

    def record(self, client: str, now: float) -> None:
        times = self._seen.setdefault(client, deque())
        times.append(now)
        self._seen.move_to_end(client)
        while len(self._seen) > MAX_TRACKED:
            self._seen.popitem(last=False)


class Tokens:
    """One-time tokens for rendered forms, each bound to the client it was issued to."""

    def __init__(self) -> None:
        self._issued: OrderedDict[str, str] = OrderedDict()  # token -> client
        self._used: OrderedDict[str, None] = OrderedDict()

    def issue(self, client: str) -> str:
        token = secrets.token_urlsafe(16)
        self._issued[token] = client
        while len(self._issued) > MAX_TRACKED:
            self._issued.popitem(last=False)
        return token

    def state(self, token: str, client: str) -> str:
        """ "fresh" (may be used), "used" (sent already) or "unknown"."""
        if token in self._used:
            return "used"
        return "fresh" if self._issued.get(token) == client else "unknown"

    def use(self, token: str) -> None:
        self._issued.pop(token, None)
        self._used[token] = None
        while len(self._used) > MAX_TRACKED:
            self._used.popitem(last=False)


class FeedbackDesk:
    """Takes a submitted form and decides: "sent", "duplicate", or FeedbackRejected."""

    def __init__(self, sink: FeedbackSink, per_hour: int) -> None:
        self.sink = sink
        self.limit = RateLimit(per_hour)
        self.tokens = Tokens()
        self.sent = 0
        self.rejected = 0

    def submit(self, client: str, token: str, category: str, text: str, now: float) -> str:
        state = self.tokens.state(token, client)
        if state == "used":
            return "duplicate"  # the same form again: it was sent once, that is enough
        try:
            if state == "unknown":
                raise FeedbackRejected("expired")
            feedback = validate(category, text)
            if not self.limit.allowed(client, now):
                raise FeedbackRejected("rate")
        except FeedbackRejected:
            self.rejected += 1
            raise
        self.sink(feedback.category, feedback.text)  # first: if it fails, the form may be resent
        self.tokens.use(token)
        self.limit.record(client, now)
        self.sent += 1
        return "sent"
