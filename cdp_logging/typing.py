"""Public types: the payload TypedDicts and the callback aliases.

The payloads use the snake_case keys that the ``cdp`` mapping accepts, so a payload
built with ``cdp_logging.payloads`` (or written by hand and annotated with one of these)
is checked by mypy: a ``TrackPayload`` without ``event``, or a ``PagePayload`` whose
``name`` is not a string, is a type error.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from typing_extensions import Required, TypedDict

from ._core.options import ClientOptions, ErrorCallback, FlushCallback
from ._transports.base import Response, Transport, TransportError

__all__ = [
    "AliasPayload",
    "ClientOptions",
    "ErrorCallback",
    "FlushCallback",
    "GroupPayload",
    "IdentifyPayload",
    "PagePayload",
    "Payload",
    "Response",
    "ScreenPayload",
    "Timestamp",
    "TrackPayload",
    "Transport",
    "TransportError",
]

Timestamp: TypeAlias = dt.datetime | dt.date | str | float
Id: TypeAlias = str | int


class _Common(TypedDict, total=False):
    context: Mapping[str, Any]
    integrations: Mapping[str, Any]
    timestamp: Timestamp
    message_id: str


class IdentifyPayload(_Common, total=False):
    type: Required[Literal["identify"]]
    user_id: Id
    anonymous_id: Id
    traits: Mapping[str, Any]


class TrackPayload(_Common, total=False):
    type: Required[Literal["track"]]
    event: Required[str]
    user_id: Id
    anonymous_id: Id
    properties: Mapping[str, Any]


class PagePayload(_Common, total=False):
    type: Required[Literal["page"]]
    user_id: Id
    anonymous_id: Id
    name: str
    category: str
    properties: Mapping[str, Any]


class ScreenPayload(_Common, total=False):
    type: Required[Literal["screen"]]
    user_id: Id
    anonymous_id: Id
    name: str
    category: str
    properties: Mapping[str, Any]


class GroupPayload(_Common, total=False):
    type: Required[Literal["group"]]
    group_id: Required[Id]
    user_id: Id
    anonymous_id: Id
    traits: Mapping[str, Any]


class AliasPayload(_Common, total=False):
    type: Required[Literal["alias"]]
    previous_id: Required[Id]
    user_id: Required[Id]


Payload: TypeAlias = (
    IdentifyPayload | TrackPayload | PagePayload | ScreenPayload | GroupPayload | AliasPayload
)
