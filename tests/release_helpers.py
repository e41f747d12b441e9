"""Real releases of this project for the update tests (issue 16), built once per test session.

`build_release` (central/releases/build.py) makes each from the project's own files and the
locked dependencies in <project>/.cache/wheelhouse (`./run setup` fills it), so no network is
needed: 0.1.0 and 0.2.0 are the project as it is, 0.3.0 a copy in which `busfleet agent`
fails at start (a broken release that must be rolled back).

A bus takes releases only through TUF (onboard/update/fetch.py); `folder_fetch` is the fetch
that in-process tests of the update runtime inject instead (tests/test_update_slots.py).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from central.releases.build import _packages, build_release
from onboard.errors import FetchFailed, ReleaseRefused
from protocols.release import parse_version, target_name
from protocols.schemas import ReleaseRef

REPO = Path(__file__).resolve().parent.parent
WHEELHOUSE = REPO / ".cache" / "wheelhouse"
GOOD = ("0.1.0", "0.2.0")
BROKEN = "0.3.0"
BROKEN_SAYS = "this release is broken on purpose (tests/release_helpers.py)"
_AGENT_RUN = "def run(args: argparse.Namespace) -> int:\n"


def wheelhouse() -> Path:
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(
            f"{WHEELHOUSE} holds no wheels: run `./run setup` (or copy /work/main/.cache/"
            "wheelhouse) so that releases build offline"
        )
    return WHEELHOUSE


def build_releases(out: Path) -> Path:
    """busfleet-0.1.0.tar, busfleet-0.2.0.tar and the broken busfleet-0.3.0.tar in `out`
    (kept: a second call with the same folder builds nothing)."""
    if all((out / target_name(v)).is_file() for v in (*GOOD, BROKEN)):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for version in GOOD:
        build_release(REPO, out, version=version, wheelhouse=wheelhouse())
    source = broken_copy(out.parent / f"{out.name}-broken-src")
    build_release(source, out, version=BROKEN, wheelhouse=wheelhouse())
    for version in (*GOOD, BROKEN):
        assert (out / target_name(version)).is_file()
    return out


def broken_copy(into: Path) -> Path:
    """The project's files, with `busfleet agent` exiting with an error at once."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "uv.lock"):
        shutil.copy2(REPO / name, into / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in _packages(REPO):
        shutil.copytree(REPO / package, into / package, ignore=ignore)
    if (REPO / ".tools").exists():  # build_release finds uv there
        (into / ".tools").symlink_to(REPO / ".tools")
    agent = into / "busfleet" / "commands" / "agent.py"
    text = agent.read_text()
    assert text.count(_AGENT_RUN) == 1, "busfleet/commands/agent.py has no run() to break"
    broken = f"{_AGENT_RUN}    print({BROKEN_SAYS!r}, file=sys.stderr)\n    return 1\n"
    agent.write_text(text.replace(_AGENT_RUN, broken))
    return into


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder with the three release tars (built once per session, ~6 s; test modules
    take it with `releases = release_helpers.releases`)."""
    return build_releases(tmp_path_factory.getbasetemp() / "releases")


def folder_fetch(folder: Path, ref: ReleaseRef, *, running: str) -> Path:
    """A copy of a release tar from `folder`, unverified, for a runtime built in the test's
    process (never for an agent: it has no way to take one); the TUF fetch's refusal of a
    version not newer than the running one. A copy, as the runtime deletes what it fetched
    once it is installed and `folder` is the session's."""
    if parse_version(ref.version) <= parse_version(running):
        raise ReleaseRefused(f"{ref.version} is not newer than the running {running}")
    path = folder / ref.target
    if not path.is_file():
        raise FetchFailed(f"{path}: no such release")
    copy = folder.parent / f"{folder.name}-fetched" / uuid.uuid4().hex / ref.target
    copy.parent.mkdir(parents=True)
    shutil.copyfile(path, copy)
    return copy
