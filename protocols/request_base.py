"""The bases of every dispatcher's request (protocols/requests.py and the modules of its
`Request` union's parts, like protocols/release_requests.py). Pure."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["Offset", "Records", "RequestBase"]

Offset = Annotated[int, msgspec.Meta(ge=0)]


class RequestBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """A dispatcher's request to central; its `type` is the tag."""


class Records(RequestBase, frozen=True, kw_only=True):
    """A read-only request answered with records (`DispatchReply.records`) from `offset`; while
    the reply's `result["next"]` is there, ask again from it for the rest."""

    offset: Offset = 0
