"""Lazy re-exports for package faces: models load with the package, servers when first used.

A face like onboard/display/__init__.py lists its servers in `__all__` but imports them only
when one is asked for (`from onboard.display import Display`), so importing a package's models
never loads aiohttp. The face keeps the same names under `TYPE_CHECKING` for the type checker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, table: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` that imports `table[name]` (a module) on first use of `name`."""

    def __getattr__(name: str) -> object:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
