"""Secrets out of the agent's log (onboard/logs/redact.py), whatever surrounds them."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from onboard.logs.disk import AgentLogFile, attach
from onboard.logs.reader import read_log
from onboard.logs.redact import Redactor
from protocols.logtext import unpack

SECRET_CHARS = st.characters(blacklist_categories=("Cs",))
TOKEN_CHARS = st.characters(
    blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="\"'"
)


@given(st.text(SECRET_CHARS, min_size=1, max_size=30), st.text(), st.text())
def test_the_exact_secret_never_survives_whatever_surrounds_it(
    secret: str, before: str, after: str
) -> None:
    text = f"{before}{secret}{after}{secret}{before}"
    assert secret not in Redactor([secret])(text)


@given(
    st.sampled_from(["password", "passwd", "mqtt_password", "token", "secret", "api_key"]),
    st.sampled_from(["=", ": ", ":", " = "]),
    st.text(TOKEN_CHARS, min_size=8, max_size=40),
    st.text(max_size=40),
    st.text(max_size=40).map(lambda t: " " + t),
)
def test_a_value_after_a_secret_key_never_survives(
    key: str, sep: str, value: str, before: str, after: str
) -> None:
    text = f"{before} {key}{sep}{value}{after}"
    out = Redactor()(text)
    assert value not in out or value in before or value in after


def test_hostile_lines_lose_their_secrets() -> None:
    redact = Redactor(["hunter2"])
    lines = {
        'config {"password": "a b c", "x": 1}': "a b c",
        "Authorization: Bearer eyJhbGciOi.abc": "eyJhbGciOi",
        "GET / headers={'authorization': 'Basic dXNlcjpwdw=='}": "dXNlcjpwdw",
        "db postgresql://user:pg-secret@host/db": "pg-secret",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----": "MIIBOg",
        "cut -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI": "MHcCAQ",
        "tail MHcCAQEEI\n-----END PRIVATE KEY----- next": "MHcCAQ",
        "said hunter2hunter2 twice": "hunter2",
        "token:abc123def": "abc123def",
    }
    for line, secret in lines.items():
        assert secret not in redact(line), line


def test_the_file_and_its_reader_both_redact(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "agent.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stderr = io.StringIO()
    root.handlers[:] = [logging.StreamHandler(stderr)]
    root.handlers[0].setFormatter(logging.Formatter("%(message)s"))
    root.setLevel(logging.INFO)
    try:
        handler = attach(path, 1.0, "bus-x", Redactor(["pw-123456"]))
        assert isinstance(handler, AgentLogFile)
        logging.getLogger("busfleet.test").info("connecting with pw-123456 password=pw-123456")
        handler.close()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert "pw-123456" not in path.read_text() and "connecting with" in path.read_text()
    assert "pw-123456" not in stderr.getvalue()  # stderr (journald) too
    # a file written by someone else: the reader redacts it again
    with path.open("a") as f:
        f.write(path.read_text().splitlines()[0][:25] + " bus-x INFO x: old pw-123456 line\n")
    found = read_log(
        path, Redactor(["pw-123456"]), now=1e10, since_s=1e10, grep="", max_bytes=65536
    )
    text = unpack(found.log)
    assert "old " in text and "pw-123456" not in text


def test_an_unwritable_log_never_stops_the_agent_and_is_said_once(tmp_path: Path) -> None:
    full = tmp_path / "agent.log"
    full.symlink_to("/dev/full")  # every write: no space left on device
    stderr = io.StringIO()
    handler = AgentLogFile(full, 2**20, stderr=stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "a line", None, None)
    for _ in range(5):
        handler.handle(record)  # no exception
    assert stderr.getvalue().count("cannot write") == 1
    assert handler.failures == 5
    handler.close()
