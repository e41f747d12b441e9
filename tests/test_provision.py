"""`busfleet bus provision`: credentials in mosquitto's own format, a config that loads."""

from __future__ import annotations

import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from busfleet.broker.accounts import CITY_ACL
from busfleet.broker.provision import (
    ProvisionError,
    check_mosquitto_hash,
    mosquitto_hash,
    provision_bus,
    read_password_file,
    remove_user,
    set_password,
)
from busfleet.broker.tls import make_dev_certificates
from busfleet.cli import main
from onboard.config import load_config

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def _mosquitto_passwd(path: Path, user: str, password: str) -> str:
    assert MOSQUITTO_PASSWD is not None
    flags = ["-b"] if path.exists() else ["-c", "-b"]
    subprocess.run([MOSQUITTO_PASSWD, *flags, str(path), user, password], check=True)
    return read_password_file(path)[user]


def test_our_hash_is_byte_for_byte_the_one_mosquitto_passwd_makes(tmp_path: Path) -> None:
    assert MOSQUITTO_PASSWD, "mosquitto_passwd is missing (./run setup installs mosquitto)"
    import base64

    theirs = _mosquitto_passwd(tmp_path / "passwd", "bus-1", "s3cret-Ü")
    _, seven, iterations, salt, _ = theirs.split("$")
    assert seven == "7"
    ours = mosquitto_hash("s3cret-Ü", salt=base64.b64decode(salt), iterations=int(iterations))
    assert ours == theirs


def test_a_hash_from_mosquitto_passwd_checks_against_its_password_only(tmp_path: Path) -> None:
    assert MOSQUITTO_PASSWD, "mosquitto_passwd is missing (./run setup installs mosquitto)"
    theirs = _mosquitto_passwd(tmp_path / "passwd", "bus-1", "right")
    assert check_mosquitto_hash("right", theirs)
    assert not check_mosquitto_hash("wrong", theirs)


@settings(max_examples=50, deadline=None)
@given(password=st.text(min_size=1, max_size=40).filter(lambda p: "\0" not in p))
def test_any_password_checks_against_its_own_hash_and_no_other(password: str) -> None:
    hashed = mosquitto_hash(password)
    assert check_mosquitto_hash(password, hashed)
    assert not check_mosquitto_hash(password + "x", hashed)


@pytest.mark.parametrize("garbage", ["", "plain", "$6$abc$def", "$7$x$AAAA$BBBB", "$7$101$!!$??"])
def test_a_malformed_hash_checks_against_nothing(garbage: str) -> None:
    assert not check_mosquitto_hash("anything", garbage)


def test_setting_a_password_replaces_only_that_users_line(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    pwfile.write_text("# managed by hand\ncentral:$7$101$x$y\nbus-1:$7$101$a$b\n")
    assert set_password(pwfile, "bus-1", "new") is True
    assert set_password(pwfile, "bus-2", "other") is False
    lines = pwfile.read_text().splitlines()
    assert lines[:2] == ["# managed by hand", "central:$7$101$x$y"]
    entries = read_password_file(pwfile)
    assert check_mosquitto_hash("new", entries["bus-1"])
    assert check_mosquitto_hash("other", entries["bus-2"])
    assert len(lines) == 4


def test_an_existing_password_file_keeps_its_mode(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    pwfile.write_text("")
    pwfile.chmod(0o600)
    set_password(pwfile, "bus-1", "pw")
    assert stat.S_IMODE(pwfile.stat().st_mode) == 0o600


def test_concurrent_provisioning_loses_no_entry(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    users = [f"bus-{i}" for i in range(12)]
    threads = [threading.Thread(target=set_password, args=(pwfile, u, u)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = read_password_file(pwfile)
    assert sorted(entries) == sorted(users)
    assert all(check_mosquitto_hash(u, entries[u]) for u in users)


def test_removing_a_user_leaves_the_others(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    for user in ("bus-1", "bus-2"):
        set_password(pwfile, user, user)
    assert remove_user(pwfile, "bus-1") is True
    assert remove_user(pwfile, "bus-1") is False
    assert list(read_password_file(pwfile)) == ["bus-2"]


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dev_certificates(tmp_path_factory.mktemp("tls")).ca_file


def test_a_provisioned_bus_gets_a_loadable_config_a_private_password_and_an_entry(
    tmp_path: Path, ca_file: Path
) -> None:
    pwfile = tmp_path / "passwd"
    done = provision_bus(
        "bus-042", tmp_path / "out", broker_host="mqtt.example.org", broker_port=8883,
        ca_file=ca_file, password_file=pwfile,
    )  # fmt: skip
    config = load_config(done.agent_config)
    assert (config.bus.id, config.mqtt_username) == ("bus-042", "bus-042")
    assert (config.mqtt.host, config.mqtt.port) == ("mqtt.example.org", 8883)
    # The config refers to where the files will be on the bus.
    assert config.mqtt.password_file == "/etc/busfleet/password"
    assert config.mqtt.ca_file == "/etc/busfleet/ca.crt"
    assert done.ca_file is not None and done.ca_file.read_bytes() == ca_file.read_bytes()
    assert stat.S_IMODE(done.password.stat().st_mode) == 0o600
    assert stat.S_IMODE(done.directory.stat().st_mode) == 0o700
    password = done.password.read_text().strip()
    assert len(password) >= 32
    assert check_mosquitto_hash(password, read_password_file(pwfile)["bus-042"])
    assert not done.replaced


def test_two_buses_never_get_the_same_password(tmp_path: Path) -> None:
    made = [provision_bus(b, tmp_path, password_file=tmp_path / "pw") for b in ("b1", "b2")]
    assert made[0].password.read_text() != made[1].password.read_text()


def test_a_bus_with_credentials_gets_new_ones_only_when_asked(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    first = provision_bus("bus-7", tmp_path / "out", password_file=pwfile)
    old = first.password.read_text()
    with pytest.raises(ProvisionError, match="already has credentials"):
        provision_bus("bus-7", tmp_path / "elsewhere", password_file=pwfile)
    second = provision_bus("bus-7", tmp_path / "out", password_file=pwfile, rotate=True)
    new = second.password.read_text().strip()
    assert second.replaced and new != old.strip()
    assert check_mosquitto_hash(new, read_password_file(pwfile)["bus-7"])
    assert len(read_password_file(pwfile)) == 1


def test_without_a_password_file_the_entry_is_written_beside_the_config(tmp_path: Path) -> None:
    done = provision_bus("bus-9", tmp_path)
    assert done.password_entry is not None
    user, _, hashed = done.password_entry.read_text().strip().partition(":")
    assert user == "bus-9"
    assert check_mosquitto_hash(done.password.read_text().strip(), hashed)


@pytest.mark.parametrize(
    "bad", ["", "bus/7", "bus+", "#", "a b", "x" * 33, "_lead", ".hidden", "bus\n"]
)
def test_the_command_refuses_an_invalid_bus_id(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bus", "provision", bad, "--out", str(tmp_path), "--no-tls",
                 "--password-file", str(tmp_path / "pw")])  # fmt: skip
    assert code == 2
    assert "invalid bus id" in capsys.readouterr().err
    assert not (tmp_path / "pw").exists()


@pytest.mark.parametrize("name", ["central", "dispatcher", "Central"])
def test_the_command_refuses_a_service_users_name(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bus", "provision", name, "--out", str(tmp_path), "--no-tls"]) == 2
    assert "service user" in capsys.readouterr().err


def test_the_command_wants_a_ca_unless_told_the_broker_has_no_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bus", "provision", "bus-1", "--out", str(tmp_path)]) == 2
    assert "--ca-file" in capsys.readouterr().err
    assert not (tmp_path / "bus-1").exists()


def test_the_command_provisions_a_bus_for_a_tls_broker(
    tmp_path: Path, ca_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pwfile = tmp_path / "passwd"
    code = main(["bus", "provision", "bus-5", "--out", str(tmp_path / "out"),
                 "--broker-host", "localhost", "--broker-port", "18883",
                 "--ca-file", str(ca_file), "--password-file", str(pwfile),
                 "--bus-dir", str(tmp_path / "out" / "bus-5")])  # fmt: skip
    assert code == 0
    assert "reload" in capsys.readouterr().out
    config = load_config(tmp_path / "out" / "bus-5" / "agent.toml")
    assert Path(config.mqtt.ca_file).read_bytes() == ca_file.read_bytes()
    password = Path(config.mqtt.password_file).read_text().strip()
    assert check_mosquitto_hash(password, read_password_file(pwfile)["bus-5"])


def test_the_service_user_command_makes_an_account_with_its_role_in_the_city_acl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pwfile, secret, acl = tmp_path / "passwd", tmp_path / "worker.password", tmp_path / "city.acl"
    argv = ["bus", "service-user", "central-ingest-1", "--role", "central",
            "--password-file", str(pwfile), "--secret-file", str(secret),
            "--acl-file", str(acl)]  # fmt: skip
    # The city ACL must be installed first: a central account without its block would be a
    # dispatcher that thinks it is central.
    assert main(argv) == 2
    assert "install deploy/mosquitto/city.acl" in capsys.readouterr().err
    assert not pwfile.exists()
    acl.write_text(CITY_ACL.read_text())
    assert main(argv) == 0
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    entry = read_password_file(pwfile)["central-ingest-1"]
    assert check_mosquitto_hash(secret.read_text().strip(), entry)
    assert "user central-ingest-1" in acl.read_text().splitlines()
    # A dispatcher account (a dashboard, the CLI tools) needs no block: the patterns are its.
    argv[2:5] = ["tools", "--role", "dispatcher"]
    assert main(argv) == 0
    assert "tools" in read_password_file(pwfile)
    assert "user tools" not in acl.read_text().splitlines()


@pytest.mark.parametrize("bad", ["", "a/b", "x+", "#", "a b", "x" * 65, "_lead"])
def test_the_service_user_command_refuses_a_name_that_cannot_be_a_topic_level(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bus", "service-user", bad, "--password-file", str(tmp_path / "pw"),
            "--secret-file", str(tmp_path / "secret"),
            "--acl-file", str(tmp_path / "acl")]  # fmt: skip
    assert main(argv) == 2
    assert "invalid account name" in capsys.readouterr().err
    assert not (tmp_path / "pw").exists()


def test_the_revoke_command_says_when_the_bus_was_never_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pwfile = tmp_path / "passwd"
    set_password(pwfile, "bus-1", "pw")
    assert main(["bus", "revoke", "bus-1", "--password-file", str(pwfile)]) == 0
    assert main(["bus", "revoke", "bus-1", "--password-file", str(pwfile)]) == 1
    assert "not in" in capsys.readouterr().err


def test_development_certificates_verify_for_localhost_and_loopback(tmp_path: Path) -> None:
    assert shutil.which("openssl"), "openssl is missing (./run setup installs it)"
    assert (
        main(["bus", "dev-certs", str(tmp_path), "--host", "localhost", "--host", "127.0.0.1"]) == 0
    )
    for host in (["-verify_hostname", "localhost"], ["-verify_ip", "127.0.0.1"]):
        proc = subprocess.run(
            ["openssl", "verify", "-x509_strict", "-CAfile", str(tmp_path / "ca.crt"), *host,
             str(tmp_path / "server.crt")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    wrong = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), "-verify_hostname",
         "example.org", str(tmp_path / "server.crt")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert wrong.returncode != 0
    assert stat.S_IMODE((tmp_path / "server.key").stat().st_mode) == 0o600
