"""Compile the compact decoder with mypyc: `python -m busfleet.compact_build` (`./run setup`).

protocols/compact_decode.py is copied, as `protocols/_compact_native.py` with the SHA-256 of
its source appended, into a scratch directory, compiled there by mypyc (in the lock, with
mypy) and the extensions are put beside it in protocols/. `protocols.compact` uses it only if
that digest matches the source it finds, so an edit to the decoder without a rebuild falls
back to the pure-Python module instead of running stale code; run again, this script
compiles only when the compiled decoder is missing or stale (`--force`: always). The
extensions are not in git (.gitignore): each machine builds its own, which needs a C
compiler and Python's headers (Debian: gcc, python3-dev). `--check` only says whether the
compiled decoder is in use.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from protocols import compact_decode

HERE = Path(compact_decode.__file__).resolve().parent  # protocols/
SOURCE = HERE / "compact_decode.py"
NAME = "_compact_native"


def built() -> list[Path]:
    """The compiled decoder's files in protocols/: its extension and mypyc's runtime."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [p for p in HERE.glob(f"{NAME}*") if p.name.endswith(suffixes)]


def build() -> Path:
    """Compile; returns the extension's path. Raises CalledProcessError if mypyc fails."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    with tempfile.TemporaryDirectory(prefix="compact-build-") as tmp:
        pkg = Path(tmp) / "protocols"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        module = pkg / f"{NAME}.py"
        module.write_bytes(source + f'\nSOURCE_DIGEST = "{digest}"\n'.encode())
        mypyc = Path(sys.executable).with_name("mypyc")
        subprocess.run(
            [str(mypyc), f"protocols/{NAME}.py"],
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        exts = [p for p in Path(tmp).rglob("*.so") if p.name.startswith(NAME)]
        if not any(p.name.startswith(f"{NAME}.") for p in exts):
            raise RuntimeError(f"mypyc made no {NAME} extension")
        for old in built():
            old.unlink()
        # The module and (mypyc 1.x) its runtime library `_compact_native__mypyc`; each
        # replaced atomically, so a running import sees the old one or the new one.
        for ext in sorted(exts, key=lambda p: p.name.startswith(f"{NAME}.")):  # module last
            target = HERE / ext.name
            shutil.copyfile(ext, target.with_suffix(".tmp"))
            target.with_suffix(".tmp").replace(target)
        return target


def in_use() -> bool:
    """Whether a fresh interpreter's `protocols.compact` takes the compiled decoder."""
    out = subprocess.run(
        [sys.executable, "-c", "from protocols import compact; print(compact.NATIVE)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip() == "True"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 unless the compiled one is used")
    p.add_argument("--force", action="store_true", help="compile even if it is up to date")
    args = p.parse_args(argv)
    native = in_use()
    if not args.check and (args.force or not native):
        print(f"compiled {build()}", file=sys.stderr)
        native = in_use()
    print(f"compact decoder: {'compiled' if native else 'pure Python'}", file=sys.stderr)
    return 0 if native else 1


if __name__ == "__main__":
    sys.exit(main())
