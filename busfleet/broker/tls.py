"""Development and test certificates: a private CA and a server certificate, made with `openssl`.

Production brokers use the city's PKI or a public CA (deploy/README.md, "TLS"); this helper is
for tests and a technician's laptop. It shells out to the `openssl` CLI because the
`cryptography` package is not a dependency of busfleet.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from busfleet.broker.errors import TlsError


@dataclass(frozen=True, slots=True)
class DevCertificates:
    """Where make_dev_certificates put its files (PEM)."""

    ca_file: Path  # give this to clients (agent.toml mqtt.ca_file, central.toml mqtt_ca_file)
    ca_key: Path  # keep private: signs server certificates
    cert_file: Path  # the broker's certificate (mosquitto `certfile`)
    key_file: Path  # the broker's private key (mosquitto `keyfile`), mode 0600


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise TlsError("the openssl command is not installed (apt-get install openssl)")
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise TlsError(f"openssl {args[0]} failed", proc.stderr)


def _subject_alt_names(hosts: Sequence[str]) -> str:
    names = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            names.append(f"DNS:{host}")
        else:
            names.append(f"IP:{host}")
    return ",".join(names)


def make_dev_certificates(
    directory: Path,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    days: int = 825,
) -> DevCertificates:
    """Make a CA and a server certificate for `hosts` (names and IP addresses) in `directory`.

    The certificates carry the extensions that strict verifiers ask for (CA basic constraints,
    key usage, subject alternative names, serverAuth), so Python's default SSL context and
    mosquitto's clients accept them without special flags. Keys are EC P-256.
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    directory.mkdir(parents=True, exist_ok=True)
    certs = DevCertificates(
        ca_file=directory / "ca.crt",
        ca_key=directory / "ca.key",
        cert_file=directory / "server.crt",
        key_file=directory / "server.key",
    )
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", certs.ca_key.name, "-out", certs.ca_file.name,
        "-days", str(days), "-subj", "/CN=busfleet development CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", certs.key_file.name, "-out", "server.csr",
        "-subj", f"/CN={hosts[0]}",
        cwd=directory,
    )  # fmt: skip
    extensions = directory / "server.ext"
    extensions.write_text(
        "\n".join(
            [
                f"subjectAltName={_subject_alt_names(hosts)}",
                "basicConstraints=critical,CA:FALSE",
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage=serverAuth",
                "subjectKeyIdentifier=hash",
                "authorityKeyIdentifier=keyid",
                "",
            ]
        )
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", certs.ca_file.name,
        "-CAkey", certs.ca_key.name, "-set_serial", str(secrets.randbits(63)),
        "-days", str(days), "-sha256", "-extfile", extensions.name, "-out", certs.cert_file.name,
        cwd=directory,
    )  # fmt: skip
    (directory / "server.csr").unlink()
    extensions.unlink()
    for key in (certs.ca_key, certs.key_file):
        os.chmod(key, 0o600)
    return certs
