"""deploy/ is what a city installs: the units parse, the ACL covers the topic tree, the README
documents every config key and every command it shows."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from busfleet.broker.provision import RESERVED_USERS
from busfleet.broker.secure import ACL, TEMPLATE, render_mosquitto_config
from busfleet.cli import build_parser
from protocols import topics

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
README = DEPLOY / "README.md"
UNITS = {
    "busfleet-agent.service": ["agent", "--config"],
    "busfleet-central.service": ["central", "serve", "--config"],
}


def _directions() -> dict[topics.Kind, str]:
    """Per-bus kind -> who writes it ("bus" or "central"), read from protocols/topics.py's tree."""
    doc = topics.__doc__ or ""
    found = re.findall(r"busfleet/v1/bus/\{bus\}/(\S+)\s+(\w+) ->", doc)
    return {topics.Kind(suffix): writer for suffix, writer in found}


PER_BUS = [k for k in topics.Kind if k not in (topics.Kind.FLEET, topics.Kind.CENTRAL_STATS)]
UPLINK = [k for k in PER_BUS if _directions().get(k) == "bus"]  # the bus writes
DOWNLINK = [k for k in PER_BUS if _directions().get(k) == "central"]  # central writes


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: [Section], Key=value (keys may repeat), # and ; comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not Key=value: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_acl(path: Path) -> dict[str | None, set[tuple[str, str]]]:
    """ACL lines by user (None: `pattern` lines, which apply to every user)."""
    rules: dict[str | None, set[tuple[str, str]]] = {None: set()}
    user: str | None = None
    for raw in path.read_text().splitlines():
        words = raw.split()
        if not words or raw.startswith("#"):
            continue
        if words[0] == "user":
            user = words[1]
            rules.setdefault(user, set())
        elif words[0] == "pattern":
            rules[None].add((words[1], words[2]))
        else:
            assert words[0] == "topic" and user is not None, f"anonymous or unknown rule {raw!r}"
            rules[user].add((words[1], words[2]))
    return rules


def grants(rules: set[tuple[str, str]], access: str, topic: str) -> bool:
    """What mosquitto decides for `topic`: a matching deny wins, else any matching grant."""
    if any(a == "deny" and topics.matches(f, topic) for a, f in rules):
        return False
    return any(a in (access, "readwrite") and topics.matches(f, topic) for a, f in rules)


def test_every_per_bus_topic_has_a_documented_direction() -> None:
    assert sorted(UPLINK + DOWNLINK, key=str) == sorted(PER_BUS, key=str)


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_a_unit_restarts_forever_under_a_watchdog(unit: str) -> None:
    sections = parse_unit(DEPLOY / "systemd" / unit)
    service = sections["Service"]
    assert sections["Unit"]["Description"]
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    assert service["Restart"] == ["always"]
    assert float(service["RestartSec"][0]) > 0
    assert service["Type"] == ["notify"]  # READY=1 and WATCHDOG=1 through busfleet.watchdog
    assert float(service["WatchdogSec"][0]) >= 10
    assert sections["Unit"]["StartLimitIntervalSec"] == ["0"]  # never give up restarting


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_a_unit_starts_a_busfleet_command_that_exists(unit: str) -> None:
    argv = shlex.split(parse_unit(DEPLOY / "systemd" / unit)["Service"]["ExecStart"][0])
    assert Path(argv[0]).name == "busfleet"
    assert argv[1 : 1 + len(UNITS[unit])] == UNITS[unit]
    args = build_parser().parse_args(argv[1:])
    assert callable(args.func)


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_verifies_a_unit_without_a_complaint(unit: str, tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing (./run setup installs it)"
    # systemd checks that ExecStart exists: point it at this checkout's busfleet script.
    text = (DEPLOY / "systemd" / unit).read_text()
    exe = shutil.which("busfleet") or str(REPO / ".venv" / "bin" / "busfleet")
    copy = tmp_path / unit
    copy.write_text(text.replace("/opt/busfleet/bin/busfleet", exe))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_rates_a_units_exposure_at_4_or_less(unit: str) -> None:
    # The same rating `systemd-analyze security busfleet-agent` gives an installed unit.
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing (./run setup installs it)"
    path = DEPLOY / "systemd" / unit
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = EXPOSURE.search(proc.stdout)
    assert found, proc.stdout + proc.stderr
    assert float(found.group(1)) <= 4.0, proc.stdout


def test_the_agent_has_descriptors_for_a_busload_of_phones_and_central_a_memory_limit() -> None:
    agent = parse_unit(DEPLOY / "systemd" / "busfleet-agent.service")["Service"]
    central = parse_unit(DEPLOY / "systemd" / "busfleet-central.service")["Service"]
    assert int(agent["LimitNOFILE"][0]) >= 65536  # systemd's default soft limit is 1,024
    assert central["MemoryMax"] and central["MemoryMax"][0] not in ("infinity", "")
    # The passenger portal's `nft` needs CAP_NET_ADMIN (a drop-in adds it as ambient): the
    # bounding set must leave it possible, and netlink must stay open.
    assert agent["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert "AF_NETLINK" in agent["RestrictAddressFamilies"][0].split()


def test_buses_may_write_uplink_and_read_downlink_topics_of_their_own_only() -> None:
    patterns = parse_acl(ACL)[None]
    want = {("write", f"busfleet/v1/bus/%u/{k.value}") for k in UPLINK}
    want |= {("read", f"busfleet/v1/bus/%u/{k.value}") for k in DOWNLINK}
    assert patterns == want


def test_central_reads_every_bus_topic_and_writes_the_downlink_ones() -> None:
    central = parse_acl(ACL)["central"]
    for kind in PER_BUS:
        assert grants(central, "read", topics.bus_topic("bus-7", kind)), kind
        assert grants(central, "write", topics.bus_topic("bus-7", kind)) == (kind in DOWNLINK), kind
    assert grants(central, "write", topics.fleet("bus-7"))
    assert grants(central, "write", topics.central_stats())


def test_dispatchers_read_the_fleet_view_and_write_only_requests_to_central() -> None:
    dispatcher = parse_acl(ACL)["dispatcher"]
    writes = [rule for rule in dispatcher if rule[0] in ("write", "readwrite")]
    assert writes == [("write", topics.all_dispatch_requests())]
    for kind in PER_BUS:
        assert not grants(dispatcher, "write", topics.bus_topic("bus-7", kind)), kind
    assert not grants(dispatcher, "write", topics.alarm("a-1"))
    assert not grants(dispatcher, "write", topics.dispatch_reply("alice"))
    central = parse_acl(ACL)["central"]
    assert grants(central, "read", topics.dispatch_request("alice"))
    assert grants(central, "write", topics.dispatch_reply("alice"))
    assert grants(central, "write", topics.alarm("a-1"))
    for topic in (
        topics.fleet("bus-7"),
        topics.central_stats(),
        topics.presence("bus-7"),
        topics.reported("bus-7"),
        topics.alarm("a-1"),
        topics.dispatch_reply("alice"),
    ):
        assert grants(dispatcher, "read", topic), topic
    for kind in (topics.Kind.TELEMETRY, topics.Kind.DESIRED, topics.Kind.COMMAND):
        assert not grants(dispatcher, "read", topics.bus_topic("bus-7", kind)), kind


def test_every_service_user_is_denied_the_bus_subtree_its_name_would_give_it() -> None:
    rules = parse_acl(ACL)
    users = {u for u in rules if u is not None}
    assert users == RESERVED_USERS  # provisioning refuses exactly these as bus ids
    for user in users:
        assert ("deny", f"busfleet/v1/bus/{user}/#") in rules[user]


def _render(**extra: object) -> str:
    paths = {k: f"/etc/mosquitto/{k}" for k in
             ("cafile", "certfile", "keyfile", "password_file", "acl_file")}  # fmt: skip
    return render_mosquitto_config(port=8883, workdir=Path("/var/lib/mosquitto"), **paths, **extra)  # type: ignore[arg-type]


def test_the_rendered_broker_config_fills_every_placeholder() -> None:
    text = _render(city_port=8884, city_bind_address="10.1.2.3")
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert not [line for line in settings if "{{" in line]
    assert "listener 8883" in settings and "listener 8884 10.1.2.3" in settings
    assert settings.count("use_username_as_clientid true") == 1  # the bus listener only
    for must in (
        "allow_anonymous false",
        "per_listener_settings false",
        "user mosquitto",
        "password_file /etc/mosquitto/password_file",
        "acl_file /etc/mosquitto/acl_file",
    ):
        assert must in settings, must
    assert text.count("cafile /etc/mosquitto/cafile") == 2  # TLS on both listeners


def test_the_broker_config_without_a_city_port_has_one_tls_listener() -> None:
    settings = _render().splitlines()
    assert [line for line in settings if line.startswith("listener")] == ["listener 8883"]
    assert "certfile /etc/mosquitto/certfile" in settings


def test_a_config_value_cannot_smuggle_in_another_option() -> None:
    with pytest.raises(ValueError, match="single line"):
        _render(log_dest="syslog\nallow_anonymous true")


def test_the_broker_config_command_prints_the_rendered_template(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["bus", "broker-config", "--port", "9883", "--city-port", "0"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "listener 9883" in out.splitlines()
    assert out.count("\nlistener ") == 1
    assert TEMPLATE.read_text().splitlines()[0] == out.splitlines()[0]


def _example_keys(name: str) -> list[str]:
    raw = tomllib.loads((DEPLOY / name).read_text())
    return [f"{section}.{key}" for section, table in raw.items() for key in table]


@pytest.mark.parametrize("example", ["agent.example.toml", "central.example.toml"])
def test_the_readme_documents_every_key_of_the_example_configs(example: str) -> None:
    readme = README.read_text()
    keys = _example_keys(example)
    assert keys
    assert [k for k in keys if f"`{k}`" not in readme] == []


def test_every_busfleet_command_in_the_readme_exists() -> None:
    commands = []
    for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ").removeprefix("sudo ")
            if line.startswith(("busfleet ", "/opt/busfleet/bin/busfleet ")):
                commands.append(shlex.split(line.split(" > ")[0].split(" | ")[0]))
    assert len(commands) >= 3
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv[1:])
        assert callable(args.func), argv
