"""The example configs in deploy/ document exactly the defaults the code uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import CentralConfig, CentralConfigError, parse_central_config
from onboard.config import (
    AgentConfig,
    BusSection,
    ConfigError,
    MqttSection,
    display_languages,
    load_config,
    parse_config,
)

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_the_agent_example_config_lists_the_defaults() -> None:
    # The one key that differs: the default ca_file ("") is refused, so the example shows TLS.
    expected = AgentConfig(mqtt=MqttSection(ca_file="/etc/busfleet/ca.crt"))
    assert load_config(DEPLOY / "agent.example.toml") == expected


def test_an_agent_config_without_tls_is_refused_unless_it_says_development_broker() -> None:
    with pytest.raises(ConfigError, match="in clear") as info:
        parse_config('[mqtt]\nhost = "mqtt.example.org"\npassword_file = "/etc/busfleet/pw"\n')
    assert info.value.key == "mqtt.ca_file"
    dev = parse_config("[mqtt]\ninsecure_dev_broker = true\n")
    assert dev.mqtt.insecure_dev_broker and dev.mqtt.ca_file == ""
    assert parse_config('[mqtt]\nca_file = "/etc/busfleet/ca.crt"\n').mqtt.ca_file


def test_an_agent_built_in_code_without_tls_is_refused_at_start(tmp_path: Path) -> None:
    from onboard.agent import Agent

    config = AgentConfig(bus=BusSection(data_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="insecure_dev_broker"):
        Agent(config)
    assert not (tmp_path / "agent.sqlite").exists()  # refused before anything was opened


DEV = "[mqtt]\ninsecure_dev_broker = true\n"


@pytest.mark.parametrize("key", ["blocked", "walled_garden"])
def test_a_portal_address_given_as_a_host_name_is_refused_at_load(key: str) -> None:
    with pytest.raises(ConfigError, match="host names are not resolved") as info:
        parse_config(f'{DEV}[portal]\n{key} = "10.0.0.1, broker.example.org"\n')
    assert info.value.key == f"portal.{key}"


def test_a_portal_with_a_broker_named_not_addressed_must_list_its_addresses() -> None:
    named = '[mqtt]\nhost = "mqtt.example.org"\nca_file = "/etc/busfleet/ca.crt"\n'
    with pytest.raises(ConfigError, match="cannot block") as info:
        parse_config(named + "[portal]\nenabled = true\n")
    assert info.value.key == "portal.blocked"
    listed = parse_config(named + '[portal]\nenabled = true\nblocked = "203.0.113.7"\n')
    assert listed.portal.blocked == "203.0.113.7"
    assert parse_config(named).mqtt.host == "mqtt.example.org"  # no portal: nothing to block


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
    assert parse_config(DEV + "[telemetry]\ninterval_s = 2").telemetry.interval_s == 2.0


@pytest.mark.parametrize(
    "text",
    [
        "mqtt_port = 'x'",
        "mqtt_port = true",  # TOML's true, which Python takes for 1
        "offline_after_s = false",
        "alarm_overspeed_kmh = nan",
        "alarm_sync_after_s = inf",
    ],
)
def test_a_bad_central_config_is_refused(text: str) -> None:
    key = text.split()[0]
    with pytest.raises(CentralConfigError, match=f"central.{key} must be"):
        parse_central_config(f"[central]\n{text}")


def test_the_display_shows_de_en_or_both_alternating() -> None:
    assert AgentConfig().display.language == "de"
    both = parse_config(DEV + '[display]\nlanguage = "de,en"\ncycle_s = 5\n').display
    assert (both.language, both.cycle_s) == ("de,en", 5.0)
    assert display_languages(both.language) == ("de", "en")
    assert display_languages(" EN ") == ("en",)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('language = "fr"', "give de, en or de,en"),
        ('language = ""', "give de, en or de,en"),
        ('language = "de;en"', "give de, en or de,en"),
        ('language = "de,de"', "twice"),
        ("language = 1", "must be str"),
        ("cycle_s = 1", "out of range"),
    ],
)
def test_a_display_language_the_pages_lack_is_refused_at_load(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        parse_config(f"{DEV}[display]\n{text}\n")
    assert info.value.key in ("display.language", "display.cycle_s")
