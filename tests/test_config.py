"""The example configs in deploy/ document exactly the defaults the code uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import CentralConfig, CentralConfigError, parse_central_config
from onboard.config import AgentConfig, ConfigError, load_config, parse_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_the_agent_example_config_lists_the_defaults() -> None:
    assert load_config(DEPLOY / "agent.example.toml") == AgentConfig()


def test_the_central_example_config_lists_the_defaults() -> None:
    assert parse_central_config((DEPLOY / "central.example.toml").read_text()) == CentralConfig()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[mqtt]\nport = 'x'", "mqtt.port"),
        ("[gps]\nbogus = 1", "gps.bogus"),
        ("[bus]\nid = 'a/b'", "bus.id"),
        ("[can]\ninterface = 'pcan'", "can.interface"),
    ],
)
def test_a_bad_agent_config_names_the_key_at_fault(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.key == key


def test_an_unreadable_agent_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_integers_are_accepted_where_seconds_are_floats() -> None:
    assert parse_config("[telemetry]\ninterval_s = 2").telemetry.interval_s == 2.0


def test_a_bad_central_config_is_refused() -> None:
    with pytest.raises(CentralConfigError):
        parse_central_config("[central]\nmqtt_port = 'x'")
