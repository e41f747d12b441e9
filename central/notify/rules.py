"""Notification rules (notify.toml, named by central.toml's `notify_file`): which alarms go to
whom, quiet hours, escalation; and the webhook signature. Sans-IO: time is an argument.

    [smtp]                       # e-mail: SMTP with STARTTLS
    host = "mail.example.org"
    port = 587
    sender = "busfleet@example.org"
    username = "busfleet"        # empty: no login
    password_file = "/etc/busfleet/smtp-password"
    [[webhooks]]
    name = "ops-chat"
    url = "https://hooks.example.org/busfleet"
    secret_file = "/etc/busfleet/ops-chat.secret"
    [[rules]]
    name = "off-route"
    kinds = ["off_route"]        # empty: every kind
    min_severity = 3
    routes = []                  # empty: any route; else the bus's current route
    groups = []                  # empty: any bus; else a member of one of these groups
    email = ["ops@example.org"]
    webhooks = ["ops-chat"]
    quiet_hours = "22:00-06:00"  # local time of `timezone`; emergencies ignore it
    timezone = "Australia/Brisbane"
    escalate_after_min = 10      # still unacknowledged this long: to the escalation targets
    escalate_email = ["duty-manager@example.org"]
    escalate_webhooks = []
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from central.config import CentralConfigError

__all__ = [
    "NotifyConfig",
    "NotifyConfigError",
    "Rule",
    "Smtp",
    "Webhook",
    "load_notify_config",
    "parse_notify_config",
    "quiet_until",
    "sign",
    "verify",
]

EMERGENCY = 4  # Alarm.severity: emergencies ignore quiet hours
SIGNATURE_HEADER = "X-Busfleet-Signature"


class NotifyConfigError(CentralConfigError):
    """notify.toml is missing, unreadable or invalid (the message says where)."""


@dataclass(frozen=True, slots=True)
class Smtp:
    host: str
    port: int = 587
    sender: str = "busfleet@localhost"
    username: str = ""
    password: str = field(default="", repr=False)  # from password_file; never logged
    starttls: bool = True
    ca_file: str = ""  # empty: the system's CAs
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Webhook:
    name: str
    url: str
    secret: bytes = field(default=b"", repr=False)  # from secret_file; never logged
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    kinds: frozenset[str] = frozenset()
    min_severity: int = 0
    routes: frozenset[str] = frozenset()
    groups: tuple[str, ...] = ()
    email: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    quiet_hours: tuple[int, int] | None = None  # minutes after local midnight: start, end
    timezone: str = "UTC"
    escalate_after_min: float = 0.0  # 0: no escalation
    escalate_email: tuple[str, ...] = ()
    escalate_webhooks: tuple[str, ...] = ()

    def matches(self, kind: str, severity: int, route: str | None, in_groups: bool) -> bool:
        """Whether an alarm is this rule's (`in_groups`: its bus is in one of `groups`)."""
        if self.kinds and kind not in self.kinds:
            return False
        if severity < self.min_severity:
            return False
        if self.routes and route not in self.routes:
            return False
        return not self.groups or in_groups


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    smtp: Smtp | None = None
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    retries: int = 5  # attempts per delivery after the first
    retry_base_s: float = 5.0  # backoff: base, doubled per attempt, capped at retry_max_s
    retry_max_s: float = 300.0
    queue_limit: int = 10_000  # alarm changes waiting; beyond, one is dropped (counted, logged)


def _strs(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise NotifyConfigError(f"{where}.{key} must be a list of non-empty strings")
    return tuple(value)


def _num(raw: dict[str, Any], key: str, default: float, where: str, low: float = 0.0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NotifyConfigError(f"{where}.{key} must be a number")
    if not math.isfinite(value) or value < low:
        raise NotifyConfigError(f"{where}.{key} must be a finite number >= {low:g}")
    return float(value)


def _str(raw: dict[str, Any], key: str, default: str, where: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise NotifyConfigError(f"{where}.{key} must be a string")
    return value


def _secret(raw: dict[str, Any], key: str, where: str, base: Path) -> str:
    name = _str(raw, key, "", where)
    if not name:
        return ""
    path = base / name
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise NotifyConfigError(f"{where}.{key}: cannot read {path}: {exc.strerror}") from exc


def _clock(text: str, where: str) -> int:
    try:
        t = dt.time.fromisoformat(text)
    except ValueError as exc:
        raise NotifyConfigError(f"{where}.quiet_hours: {text!r} is no HH:MM time") from exc
    return t.hour * 60 + t.minute


_KNOWN = {
    "smtp": {"host", "port", "sender", "username", "password_file", "starttls", "ca_file"}
    | {"timeout_s"},
    "webhooks": {"name", "url", "secret_file", "timeout_s"},
    "rules": {f.name for f in Rule.__dataclass_fields__.values()},
    "notify": {"retries", "retry_base_s", "retry_max_s", "queue_limit"},
}


def _known(raw: dict[str, Any], section: str, where: str) -> None:
    unknown = set(raw) - _KNOWN[section]
    if unknown:
        raise NotifyConfigError(f"{where}: unknown key {sorted(unknown)[0]}")


def _rule(raw: dict[str, Any], where: str, hooks: dict[str, Webhook]) -> Rule:
    _known(raw, "rules", where)
    name = _str(raw, "name", "", where)
    if not name:
        raise NotifyConfigError(f"{where}.name is required")
    quiet = None
    if q := _str(raw, "quiet_hours", "", where):
        start, sep, end = q.partition("-")
        if not sep:
            raise NotifyConfigError(f"{where}.quiet_hours must be HH:MM-HH:MM, not {q!r}")
        quiet = (_clock(start.strip(), where), _clock(end.strip(), where))
    tz = _str(raw, "timezone", "UTC", where)
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise NotifyConfigError(f"{where}.timezone: unknown time zone {tz!r}") from exc
    rule = Rule(
        name=name,
        kinds=frozenset(_strs(raw, "kinds", where)),
        min_severity=int(_num(raw, "min_severity", 0, where)),
        routes=frozenset(_strs(raw, "routes", where)),
        groups=_strs(raw, "groups", where),
        email=_strs(raw, "email", where),
        webhooks=_strs(raw, "webhooks", where),
        quiet_hours=quiet,
        timezone=tz,
        escalate_after_min=_num(raw, "escalate_after_min", 0.0, where),
        escalate_email=_strs(raw, "escalate_email", where),
        escalate_webhooks=_strs(raw, "escalate_webhooks", where),
    )
    for hook in (*rule.webhooks, *rule.escalate_webhooks):
        if hook not in hooks:
            raise NotifyConfigError(f"{where}: no [[webhooks]] named {hook!r}")
    if rule.escalate_after_min and not (rule.escalate_email or rule.escalate_webhooks):
        raise NotifyConfigError(f"{where}: escalate_after_min without escalate_email/_webhooks")
    return rule


def parse_notify_config(
    text: str, path: str = "<string>", base: Path | None = None
) -> NotifyConfig:
    """Parse notify.toml; secret files are read relative to `base` (the file's directory)."""
    base = base or Path(".")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NotifyConfigError(f"{path}: {exc}") from exc
    unknown = set(raw) - set(_KNOWN)
    if unknown:
        raise NotifyConfigError(f"{path}: unknown section {sorted(unknown)[0]}")
    smtp = None
    if isinstance(s := raw.get("smtp"), dict):
        where = f"{path}: smtp"
        _known(s, "smtp", where)
        smtp = Smtp(
            host=_str(s, "host", "", where) or "localhost",
            port=int(_num(s, "port", 587, where, 1)),
            sender=_str(s, "sender", "busfleet@localhost", where),
            username=_str(s, "username", "", where),
            password=_secret(s, "password_file", where, base),
            starttls=bool(s.get("starttls", True)),
            ca_file=str(base / c) if (c := _str(s, "ca_file", "", where)) else "",
            timeout_s=_num(s, "timeout_s", 10.0, where, 0.1),
        )
    hooks: dict[str, Webhook] = {}
    for i, h in enumerate(raw.get("webhooks", [])):
        where = f"{path}: webhooks[{i}]"
        _known(h, "webhooks", where)
        name, url = _str(h, "name", "", where), _str(h, "url", "", where)
        if not name or not url.startswith(("http://", "https://")):
            raise NotifyConfigError(f"{where}: a name and an http(s) url are required")
        secret = _secret(h, "secret_file", where, base)
        if not secret:
            raise NotifyConfigError(f"{where}: secret_file is required (the signature's key)")
        hooks[name] = Webhook(name, url, secret.encode(), _num(h, "timeout_s", 10.0, where, 0.1))
    rules = tuple(
        _rule(r, f"{path}: rules[{i}]", hooks) for i, r in enumerate(raw.get("rules", []))
    )
    if any(r.email or r.escalate_email for r in rules) and smtp is None:
        raise NotifyConfigError(f"{path}: rules send e-mail but there is no [smtp]")
    n = raw.get("notify", {})
    _known(n, "notify", f"{path}: notify")
    return NotifyConfig(
        smtp=smtp,
        webhooks=hooks,
        rules=rules,
        retries=int(_num(n, "retries", 5, f"{path}: notify")),
        retry_base_s=_num(n, "retry_base_s", 5.0, f"{path}: notify", 0.001),
        retry_max_s=_num(n, "retry_max_s", 300.0, f"{path}: notify", 0.001),
        queue_limit=int(_num(n, "queue_limit", 10_000, f"{path}: notify", 1)),
    )


def load_notify_config(path: str | Path) -> NotifyConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise NotifyConfigError(f"cannot read {p}: {exc.strerror}") from exc
    return parse_notify_config(text, str(p), p.parent)


def quiet_until(rule: Rule, severity: int, now: float) -> float | None:
    """When the rule's quiet hours end if `now` is inside them (None: send now). An
    emergency is never held."""
    if rule.quiet_hours is None or severity >= EMERGENCY:
        return None
    start, end = rule.quiet_hours
    local = dt.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(rule.timezone))
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start <= end else (minute >= start or minute < end)
    if not inside or start == end:
        return None
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    ends = midnight + dt.timedelta(minutes=end)
    if ends <= local:
        ends += dt.timedelta(days=1)
    return ends.timestamp()


def sign(secret: bytes, body: bytes, t: int) -> str:
    """The signature header's value: `t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`."""
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: bytes, body: bytes, header: str, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver checks: the signature matches and its time is recent (no replay)."""
    parts = dict(p.partition("=")[::2] for p in header.split(","))
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, t), header)
