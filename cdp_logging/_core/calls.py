"""From a log record (or a structlog event dict, or client keywords) to wire bytes.

Everything here runs in the application's thread, at the logging call, on purpose:
serialising now means a dict the application changes after the call cannot change what
was tracked, and a message that can never be delivered (a track with no event, one over
32,000 bytes) is refused at once with a reason, instead of failing a whole batch later.
Nothing here raises out of ``build``: failures come back as ``DeliveryError``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import math
import numbers
import uuid
from collections.abc import Mapping
from difflib import get_close_matches
from math import floor as _floor
from typing import Any, Final

from .._version import __version__
from . import serialise as _json
from .context import BOUND, EVER_BOUND, Bound
from .errors import INVALID_MESSAGE, MESSAGE_TOO_LARGE, DeliveryError
from .process import MESSAGE_IDS, warn_once
from .protocol import (
    CALL_TYPES,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_ID_CHARS,
    message_problems,
    timestamp_problem,
)

__all__ = [
    "CALL_TYPE_SET",
    "EVENT_DICT_FLAT_KEYS",
    "FLAT_KEYS",
    "PAYLOAD_KEYS",
    "build",
    "describe",
    "error_text",
    "fields_from_event_dict",
    "fields_from_record",
    "fields_from_source",
    "iso_timestamp",
    "name_of",
    "new_message_id",
    "plain_call_type",
    "resembled_call_type",
    "unknown_call_type",
    "unknown_keys",
]

CALL_TYPE_SET: Final = frozenset(CALL_TYPES)

# Accepted spelling -> wire key. snake_case for Python callers, camelCase because
# people paste payloads from the Segment docs.
_WIRE_KEYS: Final = {
    "user_id": "userId",
    "userId": "userId",
    "anonymous_id": "anonymousId",
    "anonymousId": "anonymousId",
    "previous_id": "previousId",
    "previousId": "previousId",
    "group_id": "groupId",
    "groupId": "groupId",
    "message_id": "messageId",
    "messageId": "messageId",
    "event": "event",
    "event_name": "event",
    "name": "name",
    "category": "category",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "integrations": "integrations",
    "timestamp": "timestamp",
}
PAYLOAD_KEYS: Final = frozenset(_WIRE_KEYS)
# What a cdp mapping takes, for a refusal to list: the payload keys and the call's type.
_KEYS_TAKEN: Final = sorted(PAYLOAD_KEYS | {"type"})
# `name` is a LogRecord attribute (the logger's name), so it cannot travel flat in
# `extra`; reading it there would send the logger name as the page name.
FLAT_KEYS: Final = tuple(sorted(PAYLOAD_KEYS - {"name"}))
# In a structlog event dict, `event` is the log message (here: the call type) and
# `timestamp` belongs to structlog's TimeStamper, in whatever format it was given;
# the track name travels as `event_name`, a backfilled time in the `cdp` form.
EVENT_DICT_FLAT_KEYS: Final = tuple(sorted(PAYLOAD_KEYS - {"event", "timestamp"}))

_ID, _TEXT, _OBJECT, _TIME = range(4)
_USUAL_TYPES: Final = {_ID: str, _TEXT: str, _OBJECT: dict, _TIME: str}
_KINDS: Final = {
    "userId": _ID,
    "anonymousId": _ID,
    "previousId": _ID,
    "groupId": _ID,
    "event": _TEXT,
    "name": _TEXT,
    "category": _TEXT,
    "messageId": _TEXT,
    "properties": _OBJECT,
    "traits": _OBJECT,
    "context": _OBJECT,
    "integrations": _OBJECT,
    "timestamp": _TIME,
}
# What each call type cannot do without: one of each group must be a non-empty string.
_REQUIRED: Final = {
    "identify": (("userId", "anonymousId"),),
    "track": (("userId", "anonymousId"), ("event",)),
    "page": (("userId", "anonymousId"),),
    "screen": (("userId", "anonymousId"),),
    "group": (("groupId",),),
    "alias": (("previousId",), ("userId",)),
}
_LIBRARY: Final = {"name": "cdp_logging", "version": __version__}
# One lookup per key on the hot path: accepted spelling -> (wire key, kind).
_SPECS: Final = {key: (wire, _KINDS[wire]) for key, wire in _WIRE_KEYS.items()}


class _Rare:
    """The "usual type" of the keys build must look at again after its loop (context,
    timestamp, messageId): no value is of it, so they take the loop's slow way."""


# build's first test per key: accepted spelling -> (wire key, the type a usual value has).
_USUAL: Final[dict[str, tuple[str, type]]] = {
    key: (wire, _Rare if wire in ("context", "timestamp", "messageId") else _USUAL_TYPES[kind])
    for key, (wire, kind) in _SPECS.items()
}
# Not a payload key: no wire key, and a type no value has.
_NOT_PAYLOAD: Final[tuple[str, type]] = ("", _Rare)
# call type -> (its required groups as pairs, one key twice where a group has one: build
# unpacks a pair where it would loop over a group; the JSON text of its type member,
# which needs no escaping).
_CALL_SPECS: Final[dict[str, tuple[tuple[tuple[str, str], ...], str]]] = {
    name: (tuple((group[0], group[-1]) for group in _REQUIRED[name]), f'"type":"{name}"')
    for name in CALL_TYPES
}
_LIBRARY_CONTEXT: Final = ',"context":' + json.dumps({"library": _LIBRARY}, separators=(",", ":"))
_LIBRARY_MEMBER: Final = ',"library":' + json.dumps(_LIBRARY, separators=(",", ":")) + "}"
_UTC: Final = dt.timezone.utc


_IDS: Final = MESSAGE_IDS
new_message_id = MESSAGE_IDS.new


# (whole second, its "YYYY-MM-DDTHH:MM:SS" text): formatting a datetime costs more
# than the rest of the timestamp, and a busy process logs many events per second.
# Replaced as one tuple, so threads never see a second paired with another's text.
# NaN until the first: no second equals it (build compares before it calls).
_second_cache: tuple[float, str] = (math.nan, "")
_MILLIS: Final = tuple(f".{ms:03d}+00:00" for ms in range(1000))


def iso_timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds, as the protocol's timestamp and sentAt."""
    global _second_cache
    if created < 0:
        return dt.datetime.fromtimestamp(created, _UTC).isoformat(timespec="milliseconds")
    # floor, not int: the same for what is left (not negative), at half the cost (int()
    # of a float goes through the type's constructor; ~460 instructions each, callgrind).
    # The int, not a float, in the arithmetic: exact for a Decimal or a Fraction (a
    # record's created may be one), which a float would make an error or round a
    # millisecond off. The cache holds it as a float, for build's one subtraction.
    whole = _floor(created)
    second, text = _second_cache
    if second != whole:
        text = dt.datetime.fromtimestamp(whole, _UTC).isoformat()[:19]
        _second_cache = (float(whole), text)
    return text + _MILLIS[_floor((created - whole) * 1000)]


def _text(value: object) -> object:
    # A (str, Enum) event name is still the string it stands for.
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return str.__str__(value)
    return value  # left for message_problems to name


def _identifier(value: object) -> object:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))  # int, IntEnum, numpy.int64 ...
    if isinstance(value, uuid.UUID):
        return str(value)
    return value  # left for message_problems to name


def _timestamp(value: object) -> object:
    """Datetimes and epoch seconds become ISO 8601; text is checked by _timestamp_problem."""
    if isinstance(value, (dt.datetime, dt.date)):
        return _json.to_jsonable(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return iso_timestamp(float(value))
        except (OverflowError, OSError, ValueError):
            return value
    return value


def _timestamp_problem(message: Mapping[str, Any]) -> str | None:
    """The protocol's rule for a text timestamp (other types are message_problems')."""
    value = message.get("timestamp")
    return timestamp_problem(value, "timestamp") if isinstance(value, str) else None


def describe(value: object, limit: int = 100) -> str:
    """A short text naming *value* for a reason, whatever its ``repr`` does.

    An application's object may raise from ``__repr__``; an int past Python's int-to-text
    limit (4,300 digits) raises from any ``str``/``repr``. A reason must still be made.
    """
    if type(value) is str:
        text = repr(value)
    else:
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - ours to describe, not to fail on
            return f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= limit else text[:limit] + "..."


def name_of(call_type: object) -> str:
    """A call type as a reason names it: itself when it is text, else ``describe``'s."""
    return call_type if type(call_type) is str else describe(call_type)


def error_text(error: BaseException) -> str:
    """``str(error)``, or a stand-in when the exception cannot be made text either."""
    try:
        return str(error)
    except Exception:  # noqa: BLE001
        return f"<{type(error).__name__} that cannot be shown>"


# A message longer than this cannot be a call type with spaces around it worth a warning.
_NEAR_MISS_CHARS: Final = 16


def resembled_call_type(text: str) -> str | None:
    """The call type *text* differs from only in case or surrounding spaces, if any."""
    folded = text.strip().lower()
    return folded if folded != text and folded in CALL_TYPE_SET else None


def unknown_call_type(call_type: object) -> str:
    """The reason a message of *call_type* is refused, naming the call type it resembles.

    One text for ``build`` and for the pipeline's build (``_core.pipeline``): the options
    a client is configured with must not change why a message is refused.
    """
    resembled = resembled_call_type(call_type) if type(call_type) is str else None
    hint = f" (did you mean {resembled!r}?)" if resembled is not None else ""
    return (
        f"unknown call type {describe(call_type)}{hint}: give one of "
        f"{', '.join(CALL_TYPES)} as the log message or as cdp['type']"
    )


def unknown_keys(call_type: object, unknown: list[str]) -> str:
    """The reason a ``cdp`` mapping with keys that are not payload keys is refused: each
    named, with the payload key it resembles (a typo loses data silently otherwise), and
    every key the mapping takes. One text for ``build`` and the pipeline's build.
    """
    named = []
    for key in sorted(unknown):
        close = get_close_matches(key, _KEYS_TAKEN, n=1) if type(key) is str else []
        named.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return (
        f"{call_type}: unknown payload key(s) {', '.join(named)}; "
        f"known keys are {', '.join(_KEYS_TAKEN)}"
    )


def plain_call_type(call_type: object) -> object:
    """A ``str`` subclass's plain text (``str.__str__`` calls none of its methods); any
    other value unchanged, for ``build`` to name and refuse."""
    if isinstance(call_type, str):
        return str.__str__(call_type)
    return call_type


def _invalid(reason: str, message: Mapping[str, Any]) -> DeliveryError:
    return DeliveryError(INVALID_MESSAGE, reason, messages=[_json.to_jsonable(dict(message))])


def build(
    call_type: object,
    fields: Mapping[str, Any],
    created: float,
    strict: bool = True,
) -> bytes | DeliveryError:
    """Turn one call's fields into the serialised wire message, or say why not.

    Args:
        call_type: One of the six call types.
        fields: Payload keys in either spelling (see ``PAYLOAD_KEYS``).
        created: When the thing happened (the log record's creation time); the
            message's ``timestamp`` unless the fields carry one.
        strict: Refuse keys that are not payload keys. True for the ``cdp`` mapping,
            where an unknown key is a typo that would silently lose data; False for
            the flat form, where the app's other ``extra`` keys are expected. Positional
            or keyword: the hot path passes it by position (a keyword costs ~200
            instructions more per call).

    This runs in the application's thread at every logging call, so the common case
    (every value already of the right type) takes one pass and cheap checks; only
    when one of them fails does ``message_problems`` run to say exactly what is wrong.
    The members the library adds (type, context, timestamp, messageId) are written as
    JSON text directly, not put in a dict to be encoded again at every call.
    """
    message: dict[str, Any] = {}
    unknown: list[str] | None = None  # made for the first unknown key, not every call
    suspect = False
    rare = False  # a key build must look at again below, or a value not of its usual type
    for key, value in fields.items():
        try:
            wire, usual = _USUAL[key]  # a subscript: cheaper than get() when it is there
        except KeyError:
            wire, usual = _NOT_PAYLOAD
        if type(value) is usual and value:
            # The usual call: non-empty text for ids and names, a dict for objects. One
            # test instead of the kind's checks below (~1,000 instructions per call).
            message[wire] = value
            continue
        if not wire:
            if strict and key != "type":
                if unknown is None:
                    unknown = []
                unknown.append(key)
            continue
        if value is None:
            continue  # absent, not null
        rare = True
        kind = _KINDS[wire]
        if kind == _OBJECT:
            # type() first: an ABC isinstance check costs more than the rest of the key.
            if type(value) is not dict and not isinstance(value, Mapping):
                message["type"] = _json.to_jsonable(call_type)
                return _invalid(
                    f"{name_of(call_type)}: {wire} must be a mapping (a dict), "
                    f"got {type(value).__name__}",
                    message,
                )
        elif type(value) is not str:
            value = (
                _identifier(value)
                if kind == _ID
                else _text(value)
                if kind == _TEXT
                else (_timestamp(value))
            )
            suspect = suspect or type(value) is not str or not value
        elif not value:
            suspect = True  # empty text: the full rules decide (see the required check)
        message[wire] = value
    bound = BOUND.get() if EVER_BOUND else None
    bound_text = ""
    if bound is not None:
        bound_text = _add_bound(message, bound)
    # Only plain text names a call type (the front doors made a str subclass plain): an
    # object merely equal to one (UserString("track"), whose hash is the text's) is
    # refused, as the pipeline's build refuses it, and no hash or __eq__ of the
    # application's runs here. Then a subscript, not get(): no method call.
    if type(call_type) is str:
        try:
            known = _CALL_SPECS[call_type]
        except KeyError:
            known = None
    else:
        known = None
    if known is None:
        message["type"] = _json.to_jsonable(call_type)
        return _invalid(unknown_call_type(call_type), {**_bound_ids(message), **message})
    if unknown:
        message["type"] = call_type
        return _invalid(unknown_keys(call_type, unknown), {**_bound_ids(message), **message})
    # What the library adds (type, context.library, timestamp, messageId, what is
    # bound) is written as JSON text (see _given_members for the order and why).
    required, added = known
    if rare:
        added, stamp, message_id, odd = _given_members(message, added, bound, bound_text, created)
        suspect = suspect or odd
    else:
        # The usual call: no context, timestamp or messageId given. What the library
        # adds is written here, iso_timestamp's usual case (a second it has formatted
        # already) and new_message_id's body inline: ~1,500 instructions per call less
        # than _given_members' general way.
        if bound is not None and bound.context_member:
            bound_text += bound.context_member + _LIBRARY_MEMBER
            library = ""
        else:
            library = _LIBRARY_CONTEXT
        second, text = _second_cache
        # A float (as logging's created is) minus the cached second: the subtraction
        # iso_timestamp makes, exact for a float in that second. Any other number (a
        # Decimal cannot be subtracted from a float; a Fraction would be rounded to one
        # first) goes to iso_timestamp, which is exact for it.
        if type(created) is float and 0.0 <= (into := created - second) < 1.0:
            stamp = text + _MILLIS[_floor(into * 1000)]
        else:
            stamp = iso_timestamp(created)
        message_id = f"{_IDS._prefix}{next(_IDS._counter)}"  # no str() call: cheaper
        # Timestamp: digits and signs only; messageId: hex and digits: no escaping. One
        # string, not six (-2,000 instructions per call under callgrind).
        added = f'{added}{library},"timestamp":"{stamp}","messageId":"{message_id}"{bound_text}'
    # Every text value here is non-empty (an empty one made the message suspect), so a
    # key present is a key given. Pairs unpacked, `in` rather than get(): a loop over
    # each group cost ~1,700 instructions per call, this ~600 (callgrind; comparing the
    # key view with a set of the usual keys, in C, cost ~330 more).
    if not suspect:
        for one, other in required:
            if (
                one not in message
                and other not in message
                and (bound is None or (one not in bound.ids and other not in bound.ids))
            ):
                suspect = True
                break
    if suspect:
        whole = _whole(message, call_type, stamp, message_id)
        problems = message_problems(whole)
        if problems:  # the cheap checks only suspect; the full rules decide
            return _invalid(f"{call_type}: {'; '.join(problems)}", whole)
    data = _json.dumps_members(message, added)
    if data is None:
        data = _json.dumps(_whole(message, call_type, stamp, message_id))
    if len(data) > MAX_MESSAGE_BYTES:
        return DeliveryError(
            MESSAGE_TOO_LARGE,
            f"{call_type} message is {len(data):,} bytes serialised; the limit is "
            f"{MAX_MESSAGE_BYTES:,}: send less in properties/traits/context",
            messages=[_json.to_jsonable(_whole(message, call_type, stamp, message_id))],
        )
    return data


def _given_members(
    message: dict[str, Any], added: str, bound: Bound | None, bound_text: str, created: float
) -> tuple[str, object, object, bool]:
    """build's members after the type when the call gave context, a timestamp or a
    messageId (or a value not of its usual type): the JSON text of what the library
    adds, the timestamp and messageId the message has, and whether the full rules must
    look at it.

    Type and context.library first, then a timestamp and messageId unless the caller
    gave them (theirs are members already), then what is bound: last, so the short
    strings before it are copied while short.
    """
    suspect = False
    library = ""
    context = message.get("context")
    if context is None:
        if bound is not None and bound.context_member:
            bound_text += bound.context_member + _LIBRARY_MEMBER
        else:
            library = _LIBRARY_CONTEXT
    else:
        message["context"] = {**context, "library": _LIBRARY}
    stamp = message.get("timestamp")
    made_stamp = stamp is None
    if made_stamp:
        stamp = iso_timestamp(created)
    elif _timestamp_problem(message):
        suspect = True
    message_id = message.get("messageId")
    made_id = message_id is None
    if made_id:
        message_id = new_message_id()
    elif type(message_id) is not str or not message_id or len(message_id) > MAX_MESSAGE_ID_CHARS:
        suspect = True
    added += library
    if made_stamp:
        added += f',"timestamp":"{stamp}"'
    if made_id:
        added += f',"messageId":"{message_id}"'
    return added + bound_text, stamp, message_id, suspect


def _add_bound(message: dict[str, Any], bound: Bound) -> str:
    """What ``bind_context`` bound, under the call's own fields (theirs win, key by key).

    Returns the JSON text of the bound ids the call lacks, to be spliced in like the
    members build adds, rather than put in *message* to be encoded again at every call.
    """
    ids = ""
    for wire, member in bound.id_members:
        if wire not in message:
            ids += member
    if bound.context:
        own = message.get("context")
        if own is not None:
            message["context"] = {**bound.context, **own}
    if bound.integrations:
        own = message.get("integrations")
        message["integrations"] = (
            bound.integrations if own is None else {**bound.integrations, **own}
        )
    return ids


def _bound_ids(message: Mapping[str, Any]) -> dict[str, str]:
    """The bound ids *message* lacks, for the dict forms of a message (checks, errors)."""
    bound = BOUND.get()
    if bound is None:
        return {}
    return {wire: value for wire, value in bound.ids.items() if wire not in message}


def _bound_context() -> dict[str, Any]:
    bound = BOUND.get()
    return bound.context if bound is not None and bound.context else {}


def _whole(
    message: dict[str, Any], call_type: object, stamp: object, message_id: object
) -> dict[str, Any]:
    """The message as a dict with what ``build`` adds: for validation and error reports."""
    return {
        **_bound_ids(message),
        **message,
        "type": call_type,
        "context": message.get("context") or {**_bound_context(), "library": _LIBRARY},
        "timestamp": stamp,
        "messageId": message_id,
    }


def fields_from_record(record: logging.LogRecord) -> tuple[object, Mapping[str, Any], bool] | None:
    """Find the analytics payload a log record carries, if any.

    Returns ``(call_type, fields, strict)`` or None for an ordinary log record. Only
    named keys are read (never "all extras"), so framework attributes on the record
    cannot leak into the message.
    """
    attrs = record.__dict__
    msg = record.msg
    if type(msg) is dict and attrs.get("cdp") is None:
        # structlog's ProcessorFormatter route: the event dict itself is the message.
        return fields_from_event_dict(msg)
    return fields_from_source(msg, attrs, FLAT_KEYS)


def fields_from_event_dict(
    event_dict: Mapping[str, Any],
) -> tuple[object, Mapping[str, Any], bool] | None:
    """The structlog twin of ``fields_from_record``: same forms, structlog's key names."""
    return fields_from_source(event_dict.get("event"), event_dict, EVENT_DICT_FLAT_KEYS)


def fields_from_source(
    message: object, source: Mapping[str, Any], flat_keys: tuple[str, ...]
) -> tuple[object, Mapping[str, Any], bool] | None:
    """The two record forms, wherever the record comes from: a mapping under ``cdp``
    in *source*, or *message* a call type with *flat_keys* in *source*.

    The one recogniser for stdlib records (their ``__dict__``), structlog event dicts
    and loguru records (their ``extra``), so the three worlds cannot drift apart.
    """
    payload = source.get("cdp")
    if type(payload) is dict or (payload is not None and isinstance(payload, Mapping)):
        return payload.get("type") or message, payload, True
    if type(message) is not str:
        if not isinstance(message, str):
            return None
        message = str.__str__(message)  # a str subclass: its text, without its methods
    if message in CALL_TYPE_SET:
        flat = {key: source[key] for key in flat_keys if key in source}
        return (message, flat, False) if flat else None
    if len(message) <= _NEAR_MISS_CHARS:
        # An ordinary short message ("user logged in") pays the fold and one set test;
        # only one that resembles a call type has its keys looked at.
        resembled = resembled_call_type(message)
        if resembled is not None:
            keys = [key for key in flat_keys if key in source]
            if keys:
                warn_once(
                    f"near-miss:{message}",
                    f"a record whose message is {message!r} carries analytics keys "
                    f"({', '.join(keys)}) and was not sent: the message must be exactly "
                    f"{resembled!r} (a call type, in lower case, without spaces)",
                )
    return None
