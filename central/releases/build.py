"""`busfleet release build`: a self-contained release of the agent, installable offline.

A release is one uncompressed tar (`busfleet-{version}.tar`; wheels are compressed already):
`release.json` (protocols/release.py's `Manifest`: version, interpreter, platform, each wheel
with its sha256 and size) and `wheels/`: the project's own wheel and every dependency that
uv.lock pins, as wheels, checked against the lock's hashes. A bus installs it with
`pip install --no-index --find-links wheels/` into a new slot (onboard/update/), never
touching the network. The wheels fit the machine the build runs on (`platform` in the
manifest) unless `platform` names another (`--platform manylinux2014_aarch64` for ARM
boards: pip then takes binary wheels only).

Where the dependencies come from: PyPI, or with `wheelhouse` a folder of wheels filled
beforehand (`./run setup` keeps one in .cache/wheelhouse, so tests build releases offline);
either way pip checks every file against the hashes in uv.lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from protocols.release import MANIFEST, Manifest, WheelFile, parse_version, target_name

__all__ = ["BuildError", "build_release", "project_version"]

# What goes into the project's wheel besides the packages (pyproject.toml names those).
_PROJECT_FILES = ("pyproject.toml", "README.md", "uv.lock")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", ".*")
_VERSION_LINE = re.compile(r'^version = "[^"]*"$', re.M)


class BuildError(Exception):
    """A release cannot be built; the message says why (a missing tool, a failed step)."""


def project_version(project: Path) -> str:
    """The version pyproject.toml gives the project."""
    match = _VERSION_LINE.search((project / "pyproject.toml").read_text())
    if match is None:
        raise BuildError(f"{project / 'pyproject.toml'}: no version line")
    return match.group(0).split('"')[1]


def build_release(
    project: Path,
    out_dir: Path,
    *,
    version: str | None = None,
    wheelhouse: Path | None = None,
    platform: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Path:
    """Build the release of the project at `project` (a checkout with uv.lock) into `out_dir`;
    returns the tar's path. `version` overrides pyproject's (the project's wheel carries it)."""
    version = version or project_version(project)
    parse_version(version)  # CodecError: not a release version
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="busfleet-release-") as tmp:
        work = Path(tmp)
        wheels = work / "wheels"
        wheels.mkdir()
        progress(f"building the busfleet {version} wheel")
        _project_wheel(project, work / "src", wheels, version)
        progress("collecting the locked dependencies as wheels")
        _dependency_wheels(project, work, wheels, wheelhouse, platform)
        manifest = Manifest(
            version=version,
            python=f"{sys.version_info.major}.{sys.version_info.minor}",
            platform=platform or sysconfig.get_platform(),
            created=time.time(),
            requirement=f"busfleet=={version}",
            wheels=[_wheel_file(p) for p in sorted(wheels.glob("*.whl"))],
        )
        (work / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
        target = out_dir / target_name(version)
        partial = target.with_name(target.name + ".part")
        with tarfile.open(partial, "w") as tar:
            tar.add(work / MANIFEST, arcname=MANIFEST)
            for wheel in manifest.wheels:
                tar.add(wheels / wheel.file, arcname=f"wheels/{wheel.file}")
        partial.replace(target)
    size = target.stat().st_size
    progress(f"{target}: {len(manifest.wheels)} wheels, {size / 1e6:.1f} MB")
    return target


def _project_wheel(project: Path, src: Path, wheels: Path, version: str) -> None:
    """The project's wheel, built from a copy whose pyproject says `version`."""
    src.mkdir()
    for name in _PROJECT_FILES:
        shutil.copy2(project / name, src / name)
    for package in _packages(project):
        shutil.copytree(project / package, src / package, ignore=_IGNORE)
    pyproject = src / "pyproject.toml"
    pyproject.write_text(_VERSION_LINE.sub(f'version = "{version}"', pyproject.read_text(), 1))
    _run([_uv(project), "build", "--wheel", "--offline", "-q", "--out-dir", str(wheels), str(src)])


def _dependency_wheels(
    project: Path, work: Path, wheels: Path, wheelhouse: Path | None, platform: str | None
) -> None:
    """Every dependency uv.lock pins for the agent (no dev tools, no extras), hash-checked."""
    requirements = work / "requirements.txt"
    export = ["export", "--frozen", "--no-dev", "--no-emit-project", "-q", "--format"]
    exported = _run([_uv(project), *export, "requirements-txt", "--project", str(project)])
    requirements.write_text(exported)
    command = [*_pip(project), "download", "-q", "--only-binary=:all:", "--require-hashes"]
    command += ["-r", str(requirements), "-d", str(wheels)]
    if wheelhouse is not None:
        command += ["--no-index", "--find-links", str(wheelhouse)]
    if platform is not None:
        command += ["--platform", platform, "--python-version", "3.11"]
    _run(command)


def _packages(project: Path) -> list[str]:
    text = (project / "pyproject.toml").read_text()
    match = re.search(r"^packages = \[(.*?)\]", text, re.M)
    if match is None:
        raise BuildError("pyproject.toml names no packages ([tool.hatch.build.targets.wheel])")
    return json.loads(f"[{match.group(1)}]")  # type: ignore[no-any-return]


def _uv(project: Path) -> str:
    found = shutil.which("uv") or project.resolve() / ".tools/uv/bin/uv"
    if not Path(found).exists():
        raise BuildError("uv is needed to build a release (./run setup installs it)")
    return str(found)


def _pip(project: Path) -> list[str]:
    """An interpreter with pip: the project's tool environment (./run setup), else python3."""
    for python in (project.resolve() / ".tools/uv/bin/python", Path(sys.executable)):
        if not python.exists():
            continue
        probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True)
        if probe.returncode == 0:
            return [str(python), "-m", "pip"]
    return ["python3", "-m", "pip"]


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{command[0]}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{' '.join(command[:3])} failed:\n{tail}")
    return done.stdout


def _wheel_file(path: Path) -> WheelFile:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return WheelFile(file=path.name, sha256=digest.hexdigest(), size=path.stat().st_size)
