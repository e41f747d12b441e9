"""The agent's log on disk: every line it logs also goes to a size-capped set of rotated
files ([logs] in agent.toml), with secrets taken out as it is written (redact.py).

`max_mb` is split over FILES files (agent.log, agent.log.1, ... agent.log.3; the lowest
number is the newest), so the log never takes more than that. The disk is the bus's to lose:
a directory that cannot be made or written, or a full disk, never stops the agent. It logs to
stderr only (journald) and says so once; when the file can be written again it says that too.

The lines carry their time with its UTC offset (reader.py filters by it); a record longer than
MAX_RECORD characters (a runaway repr) is cut, so one line cannot push the rest out.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from onboard.logs.redact import Redactor, secrets_of

if TYPE_CHECKING:
    from onboard.config import AgentConfig

__all__ = [
    "FILES",
    "LINE_FORMAT",
    "MAX_RECORD",
    "AgentLogFile",
    "attach",
    "attach_for_agent",
    "log_path",
]

FILES = 4  # the live file and three rotated ones
MAX_RECORD = 16_384  # characters of one record, traceback included
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
LINE_FORMAT = "%(asctime)s {identity} %(levelname)s %(name)s: %(message)s"


def log_path(file: str, data_dir: str) -> Path:
    """The log file of [logs] `file`, or its default in the bus's data directory."""
    return Path(file) if file else Path(data_dir) / "logs" / "agent.log"


class RedactingFormatter(logging.Formatter):
    """A formatter whose text has no secrets and no more than MAX_RECORD characters."""

    def __init__(self, inner: logging.Formatter, redact: Redactor) -> None:
        super().__init__()
        self.inner = inner
        self.redact = redact
        self._last: tuple[logging.LogRecord, str] | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._last is not None and self._last[0] is record:  # the rollover check had it
            return self._last[1]
        text = self.redact(self.inner.format(record))
        if len(text) > MAX_RECORD:
            text = f"{text[:MAX_RECORD]} [… {len(text) - MAX_RECORD} characters cut]"
        self._last = (record, text)
        return text


class AgentLogFile(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that survives its disk: a failure is said once on stderr (not a
    traceback per line) and the lines go on to the other handlers."""

    def __init__(self, path: Path, max_bytes: int, stderr: TextIO | None = None) -> None:
        super().__init__(
            path, maxBytes=max(1024, max_bytes // FILES), backupCount=FILES - 1, delay=True
        )
        self.stderr = stderr or sys.stderr
        self.failing = False
        self.failures = 0
        self._error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self._error = None
        try:
            if self.shouldRollover(record):
                self.doRollover()
            logging.FileHandler.emit(self, record)  # its errors come to handleError
        except Exception as exc:  # the log must never stop the agent
            self._error = exc
        if self._error is not None:
            self._failed(self._error)
            return
        if self.failing:
            self.failing = False
            self._say(f"agent log {self.baseFilename}: writing again")

    def handleError(self, record: logging.LogRecord) -> None:
        """logging.FileHandler.emit's own errors, for `emit` to handle."""
        self._error = sys.exc_info()[1] or OSError("cannot write")

    def _failed(self, exc: BaseException | None) -> None:
        self.failures += 1
        if self.stream is not None:  # reopened at the next line: the disk may have room then
            with contextlib.suppress(OSError):
                self.stream.close()
            self.stream = None
        if not self.failing:
            self.failing = True
            self._say(f"agent log {self.baseFilename}: cannot write ({exc}); stderr only now")

    def _say(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"busfleet agent: {text}", file=self.stderr, flush=True)


def attach(path: Path, max_mb: float, identity: str, redact: Redactor) -> AgentLogFile | None:
    """Add the log file to the root logger and redaction to its other handlers (stderr:
    journald keeps it too); None, said on stderr, if the directory cannot be made."""
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.formatter is not None and not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter, redact))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"busfleet agent: agent log {path}: cannot write ({exc}); logging to stderr only",
              file=sys.stderr, flush=True)  # fmt: skip
        return None
    handler = AgentLogFile(path, int(max_mb * 2**20))
    inner = logging.Formatter(LINE_FORMAT.format(identity=identity), datefmt=TIME_FORMAT)
    handler.setFormatter(RedactingFormatter(inner, redact))
    root.addHandler(handler)
    return handler


def attach_for_agent(config: AgentConfig) -> AgentLogFile | None:
    """`attach` with the agent's [logs] settings and its secrets (the MQTT password)."""
    path = log_path(config.logs.file, config.bus.data_dir)
    redact = Redactor(secrets_of(config.mqtt.password_file))
    return attach(path, config.logs.max_mb, config.bus.id, redact)
