"""Where each client's documented traffic arrives, and how its body becomes messages.

Segment's HTTP API and Customer.io's Pipelines API take a batch at ``/v1/batch`` and
one message per request at ``/v1/identify`` ... ``/v1/alias``; analytics.js (the
browser library) posts one message to ``/v1/t``, ``/v1/i`` ... and a batch to
``/v1/b``, as ``text/plain`` so that a browser may send it without asking first. The
collector reads all of them into the same list of messages, so that what is stored,
marked and shown does not depend on the path a client happened to use.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import Any, Final

from .._core.protocol import MAX_BATCH_BYTES

__all__ = [
    "BATCH_PATHS",
    "CALL_PATHS",
    "INGEST_PATHS",
    "MAX_MERGED_BYTES",
    "METRICS_PATH",
    "SHORT_PATHS",
    "assign_message_ids",
    "batch_with_defaults",
    "jsonl",
    "non_finite_paths",
    "single_message",
    "without_non_finite",
]

BATCH_PATHS: Final = frozenset({"/v1/batch", "/v1/b"})
# The path names the call type, so a body posted there may leave its "type" out (the
# HTTP API's own examples do).
CALL_PATHS: Final[Mapping[str, str]] = {
    **{f"/v1/{kind}": kind for kind in ("identify", "track", "page", "screen", "group", "alias")},
    "/v1/i": "identify",
    "/v1/t": "track",
    "/v1/p": "page",
    "/v1/s": "screen",
    "/v1/g": "group",
    "/v1/a": "alias",
}
INGEST_PATHS: Final = BATCH_PATHS | frozenset(CALL_PATHS)
# analytics.js reports its own metrics here every 30 s: no events, but a 404 would
# fill the viewer with refusals the user did not cause.
METRICS_PATH: Final = "/v1/m"
# Only analytics.js uses these, and it sends text/plain on purpose (a "simple" request
# in CORS terms), so even the strict mode takes that Content-Type here.
SHORT_PATHS: Final = frozenset({"/v1/i", "/v1/t", "/v1/p", "/v1/s", "/v1/g", "/v1/a", "/v1/b"})
# Keys of a batch body that Segment copies into each of its messages.
_BATCH_DEFAULTS: Final = ("context", "integrations")
_MAX_LISTED_PATHS: Final = 5
# What a batch's messages may grow to once its context is merged into each: four
# times the largest body, far above any real batch (a 2 KB context in 500 messages
# is 1 MB).
MAX_MERGED_BYTES: Final = 4 * MAX_BATCH_BYTES
# A value echoed in a mark is cut, so that a mark stays one readable line.
_MAX_ECHO_CHARS: Final = 60


def batch_with_defaults(payload: Mapping[str, Any], batch: list[Any]) -> list[Any]:
    """The batch's messages with its ``context`` and ``integrations`` merged into each.

    Segment documents both as batch-level keys that apply to every message; the
    message's own keys win. The result holds copies of the messages it changed, so
    the caller's payload is left as it was sent.

    Raises:
        ValueError: merged, they would make the messages together more than
            ``MAX_MERGED_BYTES``: a 400 KB context and a hundred thousand empty
            messages in one 500 KB body would otherwise be stored as 40 GB.
    """
    defaults = {
        key: payload[key] for key in _BATCH_DEFAULTS if isinstance(payload.get(key), Mapping)
    }
    if not defaults:
        return batch
    size = len(json.dumps(defaults, separators=(",", ":")))
    receivers = sum(isinstance(item, dict) for item in batch)
    if size * receivers > MAX_MERGED_BYTES:
        raise ValueError(
            f"the batch's context and integrations ({size} bytes), merged into each of its"
            f" {receivers} messages, make {size * receivers} bytes; the limit is"
            f" {MAX_MERGED_BYTES}"
        )
    merged: list[Any] = []
    for item in batch:
        if isinstance(item, dict):
            item = dict(item)
            for key, value in defaults.items():
                own = item.get(key)
                if own is None:
                    item[key] = dict(value)
                elif isinstance(own, Mapping):
                    item[key] = {**value, **own}
        merged.append(item)
    return merged


def single_message(
    payload: Mapping[str, Any], call_type: str, path: str
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The one message a per-call endpoint received, and what is wrong with its route.

    ``writeKey`` is a credential, not a field of the message, so it is not kept; a
    missing ``type`` is the path's. A type that contradicts the path is kept as sent
    and named, since the service would file it under one or the other.
    """
    message = {key: value for key, value in payload.items() if key != "writeKey"}
    sent_type = message.setdefault("type", call_type)
    if sent_type != call_type:
        shown = repr(sent_type)
        shown = shown if len(shown) <= _MAX_ECHO_CHARS else shown[:_MAX_ECHO_CHARS] + "..."
        return message, (f"posted to {path} (a {call_type}) but its type is {shown}",)
    return message, ()


def assign_message_ids(batch: list[Any]) -> list[Any]:
    """Give each message without a ``messageId`` one, as the real services do.

    Returns the batch with copies of the messages it changed.
    """
    assigned: list[Any] = []
    for item in batch:
        if isinstance(item, dict) and (item.get("messageId") is None or item["messageId"] == ""):
            item = {**item, "messageId": f"collector-{uuid.uuid4()}"}
        assigned.append(item)
    return assigned


def non_finite_paths(value: object) -> list[str]:
    """Where *value* holds a number JSON cannot write (``1e999`` parses as infinity).

    Iterative, as the depth check is; at most a few paths are listed.
    """
    found: list[str] = []
    pending: list[tuple[object, str]] = [(value, "")]
    while pending and len(found) < _MAX_LISTED_PATHS:
        item, where = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            found.append(where or "the message")
        elif isinstance(item, dict):
            pending.extend(
                (child, f"{where}.{key}" if where else str(key)) for key, child in item.items()
            )
        elif isinstance(item, list):
            pending.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
    return sorted(found)


def without_non_finite(value: Any) -> Any:
    """*value* with every infinite or NaN number replaced by null.

    That is what a JavaScript service keeps of ``1e999`` (``JSON.stringify(Infinity)``
    is ``null``), and it keeps every answer of the collector valid JSON. Values holding
    none are returned as they are, not copied.
    """
    if not non_finite_paths(value):
        return value
    return _replace(value)


def _replace(value: Any) -> Any:
    # Recursive: load_payload has bounded the depth to MAX_NESTING.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _replace(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_replace(child) for child in value]
    return value


def jsonl(messages: list[Any]) -> bytes:
    """*messages* as JSON Lines: one compact wire message per line, UTF-8."""
    lines = [json.dumps(message, separators=(",", ":"), allow_nan=False) for message in messages]
    return "".join(line + "\n" for line in lines).encode("utf-8")
