"""Hardware backends picked by name from one table per room, imported only when chosen.

python-can's can/interfaces/__init__.py keeps `BACKENDS = {name: (module, class)}` and imports
a backend's module only when a bus of that kind is opened, so a missing optional library costs
nothing until it is asked for, and then says so by name. Ours do the same: `onboard.gps.backends`,
`onboard.vehicle.backends`, `onboard.portal.firewalls`. Each table's keys are also the choices
agent.toml accepts (onboard/config.py checks against them; the `Literal` of names beside each
table is held equal to its keys by tests/test_backends.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TypeVar

from onboard.errors import BackendError

__all__ = ["BackendTable", "load_backend"]

BackendTable = Mapping[str, tuple[str, str]]  # name -> (module, class name)

T = TypeVar("T")


def load_backend(
    kind: str, table: BackendTable, name: str, base: type[T], *, key: str | None = None
) -> type[T]:
    """The class registered as `name`; BackendError if unknown, or its module will not load.

    `key` is the agent.toml key that chose it, carried by the error (ConfigError.key).
    """
    known = tuple(table)
    try:
        module_name, attr = table[name]
    except KeyError:
        raise BackendError(kind, name, known, key=key) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # an optional library is not installed on this machine
        raise BackendError(kind, name, known, f"cannot load {module_name}: {exc}", key=key) from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        reason = f"{module_name}.{attr} is not a {base.__name__}"
        raise BackendError(kind, name, known, reason, key=key)
    return cls
