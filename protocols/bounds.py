"""Fit a document its sender built into the bounds of its schema, before it is sent.

A Struct built in code is not validated (msgspec checks constraints when it decodes), so a bus
could store a record that central refuses (protocols/schemas.py bounds every number): a
garbage NMEA sentence with a good checksum saying 99,999 knots, a clock gone wrong. Refused,
the record would never get a receipt and be sent again forever. `fit` gives the sender the
document central will accept: each value out of bounds is left out where its field is
optional, or takes its part of the document with it (`pos` goes when its `lat` is out); what
is left out is named, for the sender to count and log. A document whose required top-level
field is out of bounds cannot be fitted: CodecError.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

from protocols.errors import CodecError

T = TypeVar("T", bound=msgspec.Struct)
Path = list[str | int]

_AT = re.compile(r" - at `\$((?:\.\w+|\[\d+\]|\[\.\.\.\])*)`$")
_PART = re.compile(r"\.(\w+)|\[(\d+)\]|\[(\.\.\.)\]")
MAX_REPAIRS = 64
SOME_KEY = "..."  # msgspec's path names no key of a dict: `$.data[...]`


def fit(doc: T) -> tuple[T, list[str]]:
    """`doc` as its schema accepts it, and the paths of what had to go (`pos.speed`)."""
    return fit_raw(msgspec.to_builtins(doc), type(doc))


def fit_raw(raw: Any, kind: type[T]) -> tuple[T, list[str]]:
    """Decoded JSON (`raw`, changed in place) as a `kind` within its bounds: what a store
    kept from before the bounds existed (a bus's outbox after an upgrade)."""
    dropped: list[str] = []
    for _ in range(MAX_REPAIRS):
        error = _error(raw, kind)
        if error is None:
            return msgspec.convert(raw, kind), dropped
        path = _path(str(error))
        gone = _remove(raw, path, kind) if path else None
        if gone is None:
            raise CodecError(f"{kind.__name__}: {error}", schema=kind.__name__) from error
        dropped.append(".".join(str(p) for p in gone))
    raise CodecError(f"{kind.__name__}: more than {MAX_REPAIRS} values out of bounds")


def _error(raw: Any, kind: type[msgspec.Struct]) -> msgspec.ValidationError | None:
    try:
        msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        return exc
    return None


def _path(message: str) -> Path:
    found = _AT.search(message)
    if found is None:
        return []
    return [int(i) if i else (name or key) for name, i, key in _PART.findall(found.group(1))]


def _remove(raw: Any, path: Path, kind: type[msgspec.Struct]) -> Path | None:
    """Take the value at `path` out of `raw`: the field if it is optional, the item of a list
    or the entry of a dict, else its parent the same way. Returns the path of what went;
    None if only the whole document could."""
    *parents, last = path
    container = raw
    for p in parents:
        container = container[p]
    if last == SOME_KEY and isinstance(container, dict):
        for key in list(container):
            value = container.pop(key)
            error = _error(raw, kind)
            if error is None or _path(str(error)) != path:
                return [*parents, key]
            container[key] = value
    elif isinstance(container, list):
        del container[int(last)]
        return path
    elif _optional(kind, parents, str(last)):
        del container[last]
        return path
    return _remove(raw, parents, kind) if parents else None


def _optional(kind: type[msgspec.Struct], parents: Path, name: str) -> bool:
    """Whether field `name` of the Struct found at `parents` has a default."""
    info: Any = mi.type_info(kind)
    for p in parents:
        info = _unwrap(info)
        if isinstance(p, int) and isinstance(info, mi.ListType):
            info = info.item_type
        elif isinstance(p, str) and isinstance(info, mi.StructType):
            field = next((f for f in info.fields if f.name == p), None)
            if field is None:
                return False
            info = field.type
        else:
            return False
    info = _unwrap(info)
    if not isinstance(info, mi.StructType):
        return False
    field = next((f for f in info.fields if f.name == name), None)
    return field is not None and not field.required


def _unwrap(info: Any) -> Any:
    """The one type inside an optional one (`Position | None`)."""
    if isinstance(info, mi.UnionType):
        inner = [t for t in info.types if not isinstance(t, mi.NoneType)]
        return inner[0] if len(inner) == 1 else info
    return info
