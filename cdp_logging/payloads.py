"""Typed builders for analytics payloads, for stdlib ``extra`` and structlog alike.

They only build a mapping; nothing is sent until it is logged. Hence the ``_payload``
names: ``track_payload(...)`` cannot be mistaken for ``Analytics.track(...)``.

>>> log.info("track", extra=as_extra(track_payload(user_id="u1", event="Played Song")))
>>> structlog_log.info("track", cdp=track_payload(user_id="u1", event="Played Song"))

Each payload carries its ``type``, so the log message is free to say anything.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from .typing import (
    AliasPayload,
    GroupPayload,
    IdentifyPayload,
    PagePayload,
    Payload,
    ScreenPayload,
    Timestamp,
    TrackPayload,
)

__all__ = [
    "alias_payload",
    "as_extra",
    "group_payload",
    "identify_payload",
    "page_payload",
    "screen_payload",
    "track_payload",
]

Id = str | int


def _present(**fields: Any) -> dict[str, Any]:
    # Absent, not null: a None argument leaves the key out, as the protocol wants.
    return {key: value for key, value in fields.items() if value is not None}


def as_extra(payload: Payload) -> dict[str, Payload]:
    """Wrap a payload for ``logging``'s ``extra=``: ``{"cdp": payload}``."""
    return {"cdp": payload}


def identify_payload(
    *,
    user_id: Id | None = None,
    anonymous_id: Id | None = None,
    traits: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    timestamp: Timestamp | None = None,
    message_id: str | None = None,
) -> IdentifyPayload:
    """Who a user is (give ``user_id`` or ``anonymous_id``)."""
    return cast(
        IdentifyPayload,
        {
            "type": "identify",
            **_present(
                user_id=user_id,
                anonymous_id=anonymous_id,
                traits=traits,
                context=context,
                integrations=integrations,
                timestamp=timestamp,
                message_id=message_id,
            ),
        },
    )


def track_payload(
    *,
    event: str,
    user_id: Id | None = None,
    anonymous_id: Id | None = None,
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    timestamp: Timestamp | None = None,
    message_id: str | None = None,
) -> TrackPayload:
    """Something a user did."""
    return cast(
        TrackPayload,
        {
            "type": "track",
            "event": event,
            **_present(
                user_id=user_id,
                anonymous_id=anonymous_id,
                properties=properties,
                context=context,
                integrations=integrations,
                timestamp=timestamp,
                message_id=message_id,
            ),
        },
    )


def page_payload(
    *,
    user_id: Id | None = None,
    anonymous_id: Id | None = None,
    name: str | None = None,
    category: str | None = None,
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    timestamp: Timestamp | None = None,
    message_id: str | None = None,
) -> PagePayload:
    """A web page view."""
    return cast(
        PagePayload,
        {
            "type": "page",
            **_present(
                user_id=user_id,
                anonymous_id=anonymous_id,
                name=name,
                category=category,
                properties=properties,
                context=context,
                integrations=integrations,
                timestamp=timestamp,
                message_id=message_id,
            ),
        },
    )


def screen_payload(
    *,
    user_id: Id | None = None,
    anonymous_id: Id | None = None,
    name: str | None = None,
    category: str | None = None,
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    timestamp: Timestamp | None = None,
    message_id: str | None = None,
) -> ScreenPayload:
    """An app screen view."""
    return cast(
        ScreenPayload,
        {
            "type": "screen",
            **_present(
                user_id=user_id,
                anonymous_id=anonymous_id,
                name=name,
                category=category,
                properties=properties,
                context=context,
                integrations=integrations,
                timestamp=timestamp,
                message_id=message_id,
            ),
        },
    )


def group_payload(
    *,
    group_id: Id,
    user_id: Id | None = None,
    anonymous_id: Id | None = None,
    traits: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    timestamp: Timestamp | None = None,
    message_id: str | None = None,
) -> GroupPayload:
    """A user's membership of a group (a company, an account)."""
    return cast(
        GroupPayload,
        {
            "type": "group",
            "group_id": group_id,
            **_present(
                user_id=user_id,
                anonymous_id=anonymous_id,
                traits=traits,
                context=context,
                integrations=integrations,
                timestamp=timestamp,
                message_id=message_id,
            ),
        },
    )


def alias_payload(
    *,
    previous_id: Id,
    user_id: Id,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    timestamp: Timestamp | None = None,
    message_id: str | None = None,
) -> AliasPayload:
    """Two identities that are one user: ``previous_id`` becomes ``user_id``."""
    return cast(
        AliasPayload,
        {
            "type": "alias",
            "previous_id": previous_id,
            "user_id": user_id,
            **_present(
                context=context,
                integrations=integrations,
                timestamp=timestamp,
                message_id=message_id,
            ),
        },
    )
