"""The wire protocol's rules, in one leaf module.

Both the client (which must refuse a bad message before it leaves, because the real
services answer 200 and silently drop it) and the local collector (which must reject
it loudly) validate against these same rules, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "CALL_TYPES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_ID_CHARS",
    "message_problems",
]

CALL_TYPES: Final = ("identify", "track", "page", "screen", "group", "alias")

# "32KB" and "500KB" are undefined in both services' docs; the decimal reading is the
# smaller one, so staying under it is safe whichever the server means.
MAX_MESSAGE_BYTES: Final = 32_000
MAX_BATCH_BYTES: Final = 500_000
MAX_BATCH_MESSAGES: Final = 2_500
MAX_MESSAGE_ID_CHARS: Final = 100

_NEEDS_USER: Final = frozenset({"identify", "track", "page", "screen"})
_STRING_FIELDS: Final = (
    "messageId",
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "event",
    "name",
    "category",
    "timestamp",
)
_OBJECT_FIELDS: Final = ("traits", "properties", "context", "integrations")


def _present(message: Mapping[str, Any], key: str) -> bool:
    value = message.get(key)
    return isinstance(value, str) and value != ""


def message_problems(message: Mapping[str, Any]) -> list[str]:
    """Return every rule *message* breaks, as sentences a person can act on.

    An empty list means the message is valid. Size is not checked here: it depends on
    the serialised form, which the caller has and this function does not.
    """
    problems: list[str] = []
    kind = message.get("type")
    if kind not in CALL_TYPES:
        problems.append(f"type must be one of {', '.join(CALL_TYPES)}, got {kind!r}")
        return problems
    for key in _STRING_FIELDS:
        if key in message and not isinstance(message[key], str):
            problems.append(f"{key} must be a string, got {type(message[key]).__name__}")
    for key in _OBJECT_FIELDS:
        if key in message and not isinstance(message[key], Mapping):
            problems.append(f"{key} must be an object, got {type(message[key]).__name__}")
    message_id = message.get("messageId")
    if message_id is None or (isinstance(message_id, str) and not message_id):
        problems.append("messageId is required")
    elif isinstance(message_id, str) and len(message_id) > MAX_MESSAGE_ID_CHARS:
        problems.append(f"messageId is longer than {MAX_MESSAGE_ID_CHARS} characters")
    if kind in _NEEDS_USER and not (
        _present(message, "userId") or _present(message, "anonymousId")
    ):
        problems.append(f"{kind} needs a userId or an anonymousId")
    if kind == "track" and not _present(message, "event"):
        problems.append("track needs an event name")
    if kind == "group" and not _present(message, "groupId"):
        problems.append("group needs a groupId")
    if kind == "alias":
        if not _present(message, "previousId"):
            problems.append("alias needs a previousId")
        if not _present(message, "userId"):
            problems.append("alias needs a userId")
    return problems
