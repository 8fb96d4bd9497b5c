"""The wire protocol's rules, in one leaf module.

Both the client (which must refuse a bad message before it leaves, because the real
services answer 200 and silently drop it) and the local collector (which must reject
it loudly) validate against these same rules, so they cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "CALL_TYPES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_ID_CHARS",
    "message_problems",
    "timestamp_problem",
    "value_problems",
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


# ISO 8601's extended calendar form with a time, as Segment's docs write timestamps
# ("2015-02-23T22:28:55.111Z", https://segment.com/docs/connections/spec/common/#timestamps).
# Deliberately narrower than datetime.fromisoformat, which also takes the basic form
# "20240501T080000Z", week dates "2024-W18-3" and an hour alone "2024-05-01T08+00:00":
# forms a CDP need not parse, so the client refuses them before they leave rather than
# letting one of them cost its whole batch a 400.
_ISO_8601: Final = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?"
    r"(?P<zone>[Zz]|(?P<sign>[+-])(?P<zone_hour>\d{2})(?::?(?P<zone_minute>\d{2}))?)?",
    re.ASCII,
)
_MAX_ECHO_CHARS: Final = 60


def _echo(value: str) -> str:
    cut = value if len(value) <= _MAX_ECHO_CHARS else value[:_MAX_ECHO_CHARS] + "..."
    return repr(cut)


def timestamp_problem(value: object, field: str) -> str | None:
    """Why *value* is not an ISO 8601 date-time with a time zone, or None."""
    if not isinstance(value, str):
        return f"{field} must be an ISO 8601 string, got {type(value).__name__}"
    match = _ISO_8601.fullmatch(value)
    if match is None:
        return f"{field} {_echo(value)} is not an ISO 8601 date-time"
    if match["zone"] is None:
        return f"{field} {_echo(value)} has no time zone (add Z or an offset like +02:00)"
    unreal = f"{field} {_echo(value)} is not a real date and time"
    if match["sign"] is not None and (
        int(match["zone_hour"]) > 23 or int(match["zone_minute"] or 0) > 59
    ):
        return unreal
    try:
        dt.datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"] or 0),
        )
    except ValueError:
        return unreal
    return None


def _present(message: Mapping[str, Any], key: str) -> bool:
    value = message.get(key)
    return isinstance(value, str) and value != ""


def message_problems(message: Mapping[str, Any]) -> list[str]:
    """Return every rule *message* breaks, as sentences a person can act on.

    An empty list means the message is valid. Size is not checked here: it depends on
    the serialised form, which the caller has and this function does not. This is the
    one rule for a valid message: the client applies it before a message leaves, and the
    collector (strictly, or as marks) when one arrives.
    """
    kind = message.get("type")
    if kind not in CALL_TYPES:
        return [f"type must be one of {', '.join(CALL_TYPES)}, got {kind!r}"]
    problems = value_problems(message)
    message_id = message.get("messageId")
    if message_id is None or (isinstance(message_id, str) and not message_id):
        problems.append("messageId is required")
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


def value_problems(message: Mapping[str, Any]) -> list[str]:
    """The rules on the values a message holds (types, the timestamp's form, the
    messageId's length), not on which fields are present.

    Apart because a ``before_send`` hook may add a missing field, but must never be
    handed a value these rules refuse, turned into text by the JSON copy it gets.
    """
    problems: list[str] = []
    for key in _STRING_FIELDS:
        if key in message and not isinstance(message[key], str):
            problems.append(f"{key} must be a string, got {type(message[key]).__name__}")
    stamp = message.get("timestamp")
    if isinstance(stamp, str):
        problem = timestamp_problem(stamp, "timestamp")
        if problem is not None:
            problems.append(problem)
    for key in _OBJECT_FIELDS:
        if key in message and not isinstance(message[key], Mapping):
            problems.append(f"{key} must be an object, got {type(message[key]).__name__}")
    message_id = message.get("messageId")
    if isinstance(message_id, str) and len(message_id) > MAX_MESSAGE_ID_CHARS:
        problems.append(f"messageId is longer than {MAX_MESSAGE_ID_CHARS} characters")
    return problems
