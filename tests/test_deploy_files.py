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

from busfleet.broker.accounts import CITY_ACL, central_accounts
from busfleet.broker.secure import ACL, TEMPLATE, render_mosquitto_config
from busfleet.cli import build_parser
from onboard.update import launcher
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


def busfleet_argv(unit: str) -> list[str]:
    """The busfleet command a unit runs: its ExecStart, or the one the agent's launcher runs
    from the current slot (`python -m busfleet.cli agent ...`, onboard/update/launcher.py)."""
    argv = shlex.split(parse_unit(DEPLOY / "systemd" / unit)["Service"]["ExecStart"][0])
    if argv[0] == "/usr/bin/python3":  # the system's interpreter, whatever the slots hold
        assert Path(argv[1]).name == "launcher.py", argv
        return [
            "busfleet",
            "agent",
            *launcher.agent_args(launcher.build_parser().parse_args(argv[2:])),
        ]
    return argv


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_a_unit_starts_a_busfleet_command_that_exists(unit: str) -> None:
    argv = busfleet_argv(unit)
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


def _city() -> dict[str | None, set[tuple[str, str]]]:
    return parse_acl(CITY_ACL)


def _as(user: str, rules: dict[str | None, set[tuple[str, str]]]) -> set[tuple[str, str]]:
    """What mosquitto applies to `user`: its own block and the patterns with %u filled in."""
    patterns = {(a, f.replace("%u", user)) for a, f in rules[None]}
    return rules.get(user, set()) | patterns


def test_the_bus_acl_has_bus_patterns_only_and_the_city_acl_no_bus_pattern() -> None:
    assert set(parse_acl(ACL)) == {None}  # no service account on the bus listener
    assert not [f for _, f in _city()[None] if f.startswith("busfleet/v1/bus/%u")]


def test_central_reads_every_bus_topic_and_writes_the_downlink_ones() -> None:
    central = _as("central", _city())
    for kind in PER_BUS:
        assert grants(central, "read", topics.bus_topic("bus-7", kind)), kind
        assert grants(central, "write", topics.bus_topic("bus-7", kind)) == (kind in DOWNLINK), kind
    assert grants(central, "write", topics.fleet("bus-7"))
    assert grants(central, "write", topics.central_stats())


def test_dispatchers_read_the_fleet_view_and_ask_central_under_their_own_account_only() -> None:
    rules = _city()
    for account in ("dispatcher", "tools", "alice"):  # every account that is not central's
        dispatcher = _as(account, rules)
        writes = {rule for rule in dispatcher if rule[0] in ("write", "readwrite")}
        assert writes == {("write", topics.dispatch_request(account))}
        assert grants(dispatcher, "read", topics.dispatch_reply(account))
        for other in ("central", "someone-else"):
            assert not grants(dispatcher, "write", topics.dispatch_request(other))
            assert not grants(dispatcher, "read", topics.dispatch_reply(other))
        for kind in PER_BUS:
            assert not grants(dispatcher, "write", topics.bus_topic("bus-7", kind)), kind
        assert not grants(dispatcher, "write", topics.alarm("a-1"))
        assert not grants(dispatcher, "write", topics.dispatch_reply(account))
        for topic in (
            topics.fleet("bus-7"),
            topics.central_stats(),
            topics.presence("bus-7"),
            topics.reported("bus-7"),
            topics.alarm("a-1"),
        ):
            assert grants(dispatcher, "read", topic), topic
        for kind in (topics.Kind.TELEMETRY, topics.Kind.DESIRED, topics.Kind.COMMAND):
            assert not grants(dispatcher, "read", topics.bus_topic("bus-7", kind)), kind
    central = _as("central", rules)
    assert grants(central, "read", topics.dispatch_request("alice"))
    assert grants(central, "write", topics.dispatch_reply("alice"))
    assert grants(central, "write", topics.alarm("a-1"))
    # The service answers requests and makes none: not even under its own name.
    assert not grants(central, "write", topics.dispatch_request("central"))


def test_a_central_account_made_by_the_command_has_the_rights_of_central(tmp_path: Path) -> None:
    acl = tmp_path / "city.acl"
    acl.write_text(CITY_ACL.read_text())
    for role in ("central", "central", "dispatcher", "central"):  # again, demoted, promoted
        args = build_parser().parse_args(
            ["bus", "service-user", "central-ingest-2", "--role", role,
             "--password-file", str(tmp_path / "passwd"), "--secret-file",
             str(tmp_path / "secret"), "--acl-file", str(acl)]
        )  # fmt: skip
        assert args.func(args) == 0
    rules = parse_acl(acl)
    assert rules["central-ingest-2"] == {
        (a, f.replace("/central/", "/central-ingest-2/") if a == "deny" else f)
        for a, f in rules["central"]
    }
    assert central_accounts(acl.read_text()) == ["central", "central-ingest-2"]
    assert not grants(
        _as("central-ingest-2", rules), "write", topics.dispatch_request("central-ingest-2")
    )
    args = build_parser().parse_args(
        ["bus", "revoke", "central-ingest-2", "--password-file", str(tmp_path / "passwd"),
         "--acl-file", str(acl)]
    )  # fmt: skip
    assert args.func(args) == 0
    assert acl.read_text() == CITY_ACL.read_text()


def _render(**extra: object) -> str:
    paths = {k: f"/etc/mosquitto/{k}" for k in
             ("cafile", "certfile", "keyfile", "password_file", "acl_file",
              "city_password_file", "city_acl_file")}  # fmt: skip
    return render_mosquitto_config(port=8883, workdir=Path("/var/lib/mosquitto"), **paths, **extra)  # type: ignore[arg-type]


def test_the_rendered_broker_config_fills_every_placeholder() -> None:
    text = _render(city_port=8884, city_bind_address="10.1.2.3")
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert not [line for line in settings if "{{" in line]
    assert "listener 8883" in settings and "listener 8884 10.1.2.3" in settings
    # Every listener: its own accounts and ACL, no anonymous client, client id = username.
    listeners = "\n".join(settings).split("\nlistener ")[1:]
    assert len(listeners) == 2
    for block, accounts in zip(listeners, ("", "city_"), strict=True):
        lines = block.splitlines()
        for must in (
            "allow_anonymous false",
            "use_username_as_clientid true",
            f"password_file /etc/mosquitto/{accounts}password_file",
            f"acl_file /etc/mosquitto/{accounts}acl_file",
        ):
            assert must in lines, (must, lines[0])
    assert "per_listener_settings true" in settings and "user mosquitto" in settings
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


def test_the_agents_launcher_may_write_its_slots_and_its_agent_may_notify_systemd() -> None:
    service = parse_unit(DEPLOY / "systemd" / "busfleet-agent.service")["Service"]
    argv = shlex.split(service["ExecStart"][0])
    slots = launcher.build_parser().parse_args(argv[2:]).slots
    assert slots in service["ReadWritePaths"]  # ProtectSystem=strict: read-only otherwise
    assert service["NotifyAccess"] == ["all"]  # READY/WATCHDOG come from the launcher's child
    assert service["KillMode"] == ["mixed"]  # SIGTERM to the launcher, which passes it on
