"""`busfleet release build|init|add|list|timestamp`: signed software releases for the buses.

`build` makes a release tar (central/releases/build.py); `init` creates the TUF repository
that signs releases and `add` signs one into it (central/releases/repository.py); central
serves the repository at /releases/ (central.toml `release_repo`) and re-signs its
timestamp. deploy/README.md ("Software updates") says which key lives where.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

DEPLOY_HELP = "deploy/README.md, Software updates"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "release",
        help="build software releases and sign them into central's TUF repository",
        description="Releases of the agent for the buses: build one (a tar of wheels that "
        "installs offline), create the TUF repository that signs them (root, targets, "
        "snapshot and timestamp keys), sign a release into it, list what it holds. Central "
        f"serves the repository to the buses over HTTP ({DEPLOY_HELP}).",
    )
    rsub = p.add_subparsers(dest="release_command", metavar="COMMAND", required=True)

    build = rsub.add_parser(
        "build",
        help="build a release tar of the agent (busfleet-VERSION.tar)",
        description="Build busfleet-VERSION.tar in --out: the project's wheel (at --version, "
        "default pyproject's) and every dependency uv.lock pins, as wheels checked against "
        "the lock's hashes, with release.json listing them. A bus installs it without network.",
    )
    build.add_argument("--project", type=Path, default=Path("."), help="the checkout (uv.lock)")
    build.add_argument("--out", type=Path, default=Path("dist"), help="folder for the tar")
    build.add_argument("--version", help="the release's version, e.g. 0.2.0 (default: pyproject)")
    build.add_argument(
        "--wheelhouse", type=Path, help="take dependency wheels from this folder, not PyPI"
    )
    build.add_argument("--platform", help="wheels for another machine, e.g. manylinux2014_aarch64")
    build.set_defaults(func=build_cmd)

    init = rsub.add_parser(
        "init",
        help="create the TUF repository that signs releases (keys and metadata)",
        description="Create REPO with an ed25519 key per TUF role (keys/, PEM, mode 0600), "
        "root metadata version 1 and empty targets, snapshot and timestamp metadata "
        "(metadata/). Run it on an offline machine, or put the root key on removable media "
        "with --root-key-dir, and keep that offline: the root key only signs a new root. "
        "metadata/root.json is what every bus is provisioned with (agent.toml "
        "update.trusted_root). An existing repository or root key is never overwritten.",
    )
    init.add_argument("repo", metavar="REPO", type=Path, help="the repository's folder")
    init.add_argument(
        "--root-key-dir", type=Path, help="write the root key here (e.g. a USB stick)"
    )
    init.add_argument(
        "--root-expires-days",
        type=int,
        default=365,
        help="root metadata valid this long (default 365); sign a new root before",
    )
    init.set_defaults(func=init_cmd)

    add = rsub.add_parser(
        "add",
        help="sign a release tar into the repository",
        description="Copy TAR (from `busfleet release build`) into REPO/targets/ under its "
        "sha256 and sign new targets, snapshot and timestamp metadata listing it, with the "
        "version its release.json says. Refused: a tar without a valid release.json (or whose "
        "wheels do not match it), or a version the repository holds already.",
    )
    add.add_argument("repo", metavar="REPO", type=Path, help="the repository's folder")
    add.add_argument("tar", metavar="TAR", type=Path, help="busfleet-VERSION.tar")
    add.add_argument(
        "--targets-key",
        type=Path,
        help="the targets key's PEM file, if not REPO/keys/targets.pem (the release manager's)",
    )
    add.set_defaults(func=add_cmd)

    ls = rsub.add_parser(
        "list",
        help="list the releases the repository holds and when its metadata expires",
        description="The releases in REPO, oldest version first (version, target, size, "
        "sha256), and the expiry of each role's metadata.",
    )
    ls.add_argument("repo", metavar="REPO", type=Path, help="the repository's folder")
    ls.set_defaults(func=list_cmd)

    stamp = rsub.add_parser(
        "timestamp",
        help="re-sign the repository's timestamp now",
        description="Sign a new timestamp version valid for --hours (default 24). `busfleet "
        "central serve` does this by itself when central.toml's release_repo holds the "
        "timestamp key; this is for a repository served otherwise.",
    )
    stamp.add_argument("repo", metavar="REPO", type=Path, help="the repository's folder")
    stamp.add_argument("--hours", type=float, default=24.0, help="valid this long (default 24)")
    stamp.set_defaults(func=timestamp_cmd)


def _fail(command: str, message: object) -> int:
    print(f"busfleet release {command}: {message}", file=sys.stderr)
    return 2


def build_cmd(args: argparse.Namespace) -> int:
    from central.releases.build import BuildError, build_release
    from protocols.errors import CodecError

    try:
        tar = build_release(
            args.project,
            args.out,
            version=args.version,
            wheelhouse=args.wheelhouse,
            platform=args.platform,
            progress=print,
        )
    except (BuildError, CodecError, OSError) as exc:
        return _fail("build", exc)
    print(tar)
    return 0


def init_cmd(args: argparse.Namespace) -> int:
    from central.releases.repository import EXPIRY, ReleaseRepoError, init

    if not 1 <= args.root_expires_days <= 3650:
        return _fail("init", "--root-expires-days must be between 1 and 3650")
    print(f"creating keys and metadata in {args.repo}")
    try:
        root = init(
            args.repo,
            root_key_dir=args.root_key_dir,
            expiry={**EXPIRY, "root": timedelta(days=args.root_expires_days)},
        )
    except (ReleaseRepoError, OSError) as exc:
        return _fail("init", exc)
    where = args.root_key_dir or args.repo / "keys"
    print(f"root key: {where / 'root.pem'} (keep it offline)")
    print(f"online keys: {args.repo / 'keys'} (targets, snapshot, timestamp)")
    print(f"provision buses with {root} (agent.toml update.trusted_root)")
    return 0


def add_cmd(args: argparse.Namespace) -> int:
    from central.releases.repository import ReleaseRepoError, add

    print(f"checking and signing {args.tar}")
    try:
        release = add(args.repo, args.tar, targets_key=args.targets_key)
    except (ReleaseRepoError, OSError) as exc:
        return _fail("add", exc)
    print(f"added {release.version}: {release.target}, {release.length} bytes, {release.sha256}")
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    from central.releases.repository import ReleaseRepoError, expiries, list_releases

    try:
        releases = list_releases(args.repo)
        expires = expiries(args.repo)
    except (ReleaseRepoError, OSError) as exc:
        return _fail("list", exc)
    for r in releases:
        print(f"{r.version}\t{r.target}\t{r.length}\t{r.sha256}")
    if not releases:
        print("no releases")
    for role, when in expires.items():
        print(f"# {role} expires {when:%Y-%m-%d %H:%M} UTC")
    return 0


def timestamp_cmd(args: argparse.Namespace) -> int:
    from central.releases.repository import ReleaseRepoError, refresh_timestamp

    if not 0 < args.hours <= 24 * 31:
        return _fail("timestamp", "--hours must be more than 0 and at most 744 (31 days)")
    try:
        version = refresh_timestamp(args.repo, expires_in=timedelta(hours=args.hours))
    except (ReleaseRepoError, OSError) as exc:
        return _fail("timestamp", exc)
    print(f"timestamp version {version}, valid for {args.hours:g} h")
    return 0
