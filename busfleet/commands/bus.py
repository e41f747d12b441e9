"""`busfleet bus ...`: provision a bus's broker credentials and render the broker's config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEPLOY_HELP = "see deploy/README.md"
PEOPLE_ROLES = ("dispatcher", "ads", "viewer", "admin")  # protocols/people_requests.py ROLES


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bus",
        help="provision buses and the broker that confines them",
        description="Technician tools for the fleet link: a new bus's credentials and "
        f"agent.toml, the mosquitto config with TLS and the ACL ({DEPLOY_HELP}).",
    )
    bsub = p.add_subparsers(dest="bus_command", metavar="COMMAND", required=True)

    prov = bsub.add_parser(
        "provision",
        help="create a bus's MQTT credentials and agent.toml",
        description="Create OUT/BUS_ID/ with agent.toml, password (mode 0600) and ca.crt for a "
        "new bus, and enter the bus in the broker's password file (mosquitto's own $7$ "
        "PBKDF2-SHA512 format). Copy the folder to the bus (--bus-dir), then reload the broker "
        "(systemctl reload mosquitto). The bus id is its MQTT username and client id; the ACL "
        "confines it to busfleet/v1/bus/BUS_ID/.",
    )
    prov.add_argument("bus_id", metavar="BUS_ID", help="1-32 of A-Z a-z 0-9 _ . - (e.g. bus-042)")
    prov.add_argument("--out", required=True, type=Path, help="folder to write BUS_ID/ into")
    prov.add_argument(
        "--broker-host",
        default="127.0.0.1",
        help="broker name the bus connects to; must match its certificate",
    )
    prov.add_argument(
        "--broker-port", type=int, default=8883, help="the broker's bus listener (default 8883)"
    )
    prov.add_argument(
        "--ca-file",
        type=Path,
        help="CA certificate that signed the broker's certificate (copied as ca.crt)",
    )
    prov.add_argument(
        "--password-file",
        type=Path,
        help="mosquitto password file to add the bus to (e.g. /etc/mosquitto/passwd); "
        "without it the entry is written to BUS_ID/mosquitto-passwd.line",
    )
    prov.add_argument(
        "--bus-dir",
        default="/etc/busfleet",
        help="where the folder's files will live on the bus (default /etc/busfleet)",
    )
    prov.add_argument(
        "--data-dir",
        default="/var/lib/busfleet",
        help="the agent's data folder on the bus (default /var/lib/busfleet)",
    )
    prov.add_argument(
        "--rotate",
        action="store_true",
        help="replace the credentials of a bus that has some (the old ones stop "
        "working at the broker's next reload)",
    )
    prov.add_argument(
        "--no-tls",
        action="store_true",
        help="allow a config without --ca-file (development brokers only)",
    )
    prov.set_defaults(func=provision_cmd)

    revoke = bsub.add_parser(
        "revoke",
        help="take a bus (or a service account) out of the broker's password file",
        description="Remove BUS_ID from a mosquitto password file (the buses', or with the "
        "city's and --acl-file a service account, with its ACL block). After `systemctl reload "
        "mosquitto` the broker refuses it and drops its open connection.",
    )
    revoke.add_argument("bus_id", metavar="BUS_ID")
    revoke.add_argument(
        "--password-file",
        type=Path,
        required=True,
        help="the broker's password file (e.g. /etc/mosquitto/passwd)",
    )
    revoke.add_argument(
        "--acl-file",
        type=Path,
        help="for a central account: the city ACL to take its block out of",
    )
    revoke.set_defaults(func=revoke_cmd)

    user = bsub.add_parser(
        "service-user",
        help="make an account on the city listener (central or a dispatcher), new password",
        description="Enter NAME in the city listener's password file with a new random "
        "password, write that password to --secret-file (mode 0600) for central.toml's "
        "mqtt_password_file, and give NAME its role in the city ACL: a central account gets a "
        "block of its own (--acl-file), a dispatcher's rights are the ACL's patterns. An "
        "account is one connection at a time (the broker forces client ids to usernames): give "
        "each central worker, each dashboard and the CLI tools beside a dashboard their own.",
    )
    user.add_argument("name", metavar="NAME", help="the account, e.g. central, dispatcher, tools")
    user.add_argument(
        "--role",
        choices=("central", *PEOPLE_ROLES),
        default="dispatcher",
        help="central: the service or one of its workers; dispatcher (default), ads, viewer or "
        "admin: a person's dashboard or CLI tools, whose role central checks (record it with "
        "`busfleet central people set NAME ROLE`: central alone writes its database)",
    )
    user.add_argument(
        "--password-file",
        type=Path,
        required=True,
        help="the city listener's password file (e.g. /etc/mosquitto/busfleet-city.passwd)",
    )
    user.add_argument(
        "--acl-file",
        type=Path,
        default=Path("/etc/mosquitto/busfleet-city.acl"),
        help="the installed city ACL (deploy/mosquitto/city.acl; default "
        "/etc/mosquitto/busfleet-city.acl)",
    )
    user.add_argument(
        "--secret-file",
        type=Path,
        required=True,
        help="where to write the password (e.g. /etc/busfleet/central.password)",
    )
    user.set_defaults(func=service_user_cmd)

    conf = bsub.add_parser(
        "broker-config",
        help="print the mosquitto config (TLS listeners, passwords, ACL)",
        description="Fill deploy/mosquitto/mosquitto.conf for this broker and print it; write "
        "it to /etc/mosquitto/mosquitto.conf. Each listener has its own password file and ACL "
        "(deploy/mosquitto/bus.acl, city.acl).",
    )
    conf.add_argument("--port", type=int, default=8883, help="bus listener port (default 8883)")
    conf.add_argument("--bind", default="", help="bus listener address (default: all)")
    conf.add_argument(
        "--city-port",
        type=int,
        default=8884,
        help="listener for central and dispatchers (default 8884; 0: none)",
    )
    conf.add_argument(
        "--city-bind",
        default="127.0.0.1",
        help="its address: the city-hall network only (default 127.0.0.1)",
    )
    conf.add_argument(
        "--cafile",
        default="/etc/mosquitto/certs/ca.crt",
        help="CA certificate (default /etc/mosquitto/certs/ca.crt)",
    )
    conf.add_argument(
        "--certfile",
        default="/etc/mosquitto/certs/server.crt",
        help="the broker's certificate (default /etc/mosquitto/certs/server.crt)",
    )
    conf.add_argument(
        "--keyfile",
        default="/etc/mosquitto/certs/server.key",
        help="its private key (default /etc/mosquitto/certs/server.key)",
    )
    conf.add_argument(
        "--password-file",
        default="/etc/mosquitto/passwd",
        help="the buses' password file (default /etc/mosquitto/passwd)",
    )
    conf.add_argument(
        "--acl-file",
        default="/etc/mosquitto/busfleet.acl",
        help="where deploy/mosquitto/bus.acl is installed (default /etc/mosquitto/busfleet.acl)",
    )
    conf.add_argument(
        "--city-password-file",
        default="/etc/mosquitto/busfleet-city.passwd",
        help="the service accounts' password file (default /etc/mosquitto/busfleet-city.passwd)",
    )
    conf.add_argument(
        "--city-acl-file",
        default="/etc/mosquitto/busfleet-city.acl",
        help="where deploy/mosquitto/city.acl is installed (default "
        "/etc/mosquitto/busfleet-city.acl)",
    )
    conf.add_argument("--workdir", default="/var/lib/mosquitto", help="persistence folder")
    conf.add_argument(
        "--log-dest",
        default="file /var/log/mosquitto/mosquitto.log",
        help='mosquitto log_dest value (default "file /var/log/mosquitto/...")',
    )
    conf.set_defaults(func=broker_config_cmd)

    certs = bsub.add_parser(
        "dev-certs",
        help="make a development CA and broker certificate (openssl)",
        description="Make ca.crt, ca.key, server.crt and server.key in DIR for a test broker. "
        "Production brokers use the city's PKI or a public CA.",
    )
    certs.add_argument("dir", type=Path, metavar="DIR")
    certs.add_argument(
        "--host",
        action="append",
        dest="hosts",
        help="a name or address the broker is reached by (repeat; default localhost and 127.0.0.1)",
    )
    certs.set_defaults(func=dev_certs_cmd)


def provision_cmd(args: argparse.Namespace) -> int:
    from busfleet.broker.errors import ProvisionError
    from busfleet.broker.provision import provision_bus
    from protocols.errors import TopicError

    if args.ca_file is None and not args.no_tls:
        print(
            "busfleet bus provision: give --ca-file (the broker only speaks TLS), or --no-tls "
            "for a development broker",
            file=sys.stderr,
        )
        return 2
    try:
        done = provision_bus(
            args.bus_id,
            args.out,
            broker_host=args.broker_host,
            broker_port=args.broker_port,
            ca_file=args.ca_file,
            password_file=args.password_file,
            bus_dir=args.bus_dir,
            data_dir=args.data_dir,
            rotate=args.rotate,
        )
    except (ProvisionError, TopicError, OSError) as exc:
        print(f"busfleet bus provision: {exc}", file=sys.stderr)
        return 2
    verb = "new credentials for" if done.replaced else "provisioned"
    print(f"{verb} {done.bus_id} in {done.directory}")
    if done.password_entry is not None:
        print(f"add {done.password_entry} to the broker's password file, then reload the broker")
    else:
        print(f"entered in {args.password_file}: reload the broker (systemctl reload mosquitto)")
    print(f"copy {done.directory}/ to {args.bus_dir}/ on the bus")
    return 0


def revoke_cmd(args: argparse.Namespace) -> int:
    from busfleet.broker.accounts import remove_account
    from busfleet.broker.errors import ProvisionError
    from busfleet.broker.provision import remove_user

    try:
        removed = remove_user(args.password_file, args.bus_id)
        if args.acl_file is not None:
            remove_account(args.acl_file, args.bus_id)
    except (ProvisionError, OSError) as exc:
        print(f"busfleet bus revoke: {exc}", file=sys.stderr)
        return 2
    if not removed:
        print(f"busfleet bus revoke: {args.bus_id} is not in {args.password_file}", file=sys.stderr)
        return 1
    print(f"{args.bus_id} removed: reload the broker (systemctl reload mosquitto)")
    return 0


def service_user_cmd(args: argparse.Namespace) -> int:
    from busfleet.broker.accounts import Role, check_account, set_role
    from busfleet.broker.errors import ProvisionError
    from busfleet.broker.provision import add_user

    broker_role: Role = "central" if args.role == "central" else "dispatcher"  # the city ACL's
    try:
        check_account(args.name)
        if args.role == "central" or args.acl_file.exists():
            set_role(args.acl_file, args.name, broker_role)  # first: a missing ACL stops here
        add_user(args.password_file, args.name, args.secret_file)
    except (ProvisionError, OSError) as exc:
        print(f"busfleet bus service-user: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.name} ({args.role}): password in {args.secret_file}; reload the broker "
        "(systemctl reload mosquitto)"
    )
    if args.role != "central":  # central checks each request against the role it recorded
        print(f"then, as an admin: busfleet central people set {args.name} {args.role}")
    return 0


def broker_config_cmd(args: argparse.Namespace) -> int:
    from busfleet.broker.secure import render_mosquitto_config

    try:
        text = render_mosquitto_config(
            port=args.port,
            workdir=Path(args.workdir),
            cafile=args.cafile,
            certfile=args.certfile,
            keyfile=args.keyfile,
            password_file=args.password_file,
            acl_file=args.acl_file,
            city_password_file=args.city_password_file,
            city_acl_file=args.city_acl_file,
            city_port=args.city_port or None,
            bind_address=args.bind,
            city_bind_address=args.city_bind,
            log_dest=args.log_dest,
        )
    except ValueError as exc:
        print(f"busfleet bus broker-config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def dev_certs_cmd(args: argparse.Namespace) -> int:
    from busfleet.broker.errors import TlsError
    from busfleet.broker.tls import make_dev_certificates

    try:
        certs = make_dev_certificates(args.dir, tuple(args.hosts or ("localhost", "127.0.0.1")))
    except TlsError as exc:
        print(f"busfleet bus dev-certs: {exc}", file=sys.stderr)
        return 2
    print(f"CA {certs.ca_file}, broker certificate {certs.cert_file}, key {certs.key_file}")
    return 0
