"""Strict checks of one batch request, with reasons a person can act on.

The real services answer 200 to most malformed events and drop them; this collector
answers 400 and says why, so that a test (or a developer) sees the mistake.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import zlib
from typing import Any

from .._protocol import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES, message_problems

__all__ = ["Rejection", "auth_user", "parse_batch"]


class Rejection(Exception):
    """The request cannot be accepted: answer *status* with *reason*."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def auth_user(header: str | None) -> str | None:
    """The user name of an HTTP Basic header (the write key), or None."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, _ = decoded.partition(":")
    return user if colon and user else None


def decompress(raw: bytes) -> bytes:
    # Bounded: a small gzip bomb must not become gigabytes in the collector's memory.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
    except zlib.error as error:
        raise Rejection(400, f"the gzip body could not be decompressed: {error}") from None
    if len(body) > MAX_BATCH_BYTES or inflater.unconsumed_tail:
        raise Rejection(400, f"request body is over {MAX_BATCH_BYTES} bytes once decompressed")
    return body


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def iso_problem(value: object, field: str) -> str | None:
    if not isinstance(value, str):
        return f"{field} must be an ISO 8601 string"
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return f"{field} {value[:40]!r} is not ISO 8601"
    if parsed.tzinfo is None:
        return f"{field} {value[:40]!r} has no time zone"
    return None


def parse_batch(body: bytes) -> tuple[list[dict[str, Any]], str]:
    """Return the batch's messages and its sentAt, or raise Rejection."""
    if len(body) > MAX_BATCH_BYTES:
        raise Rejection(400, f"request body is {len(body)} bytes, the limit is {MAX_BATCH_BYTES}")
    try:
        document = json.loads(body, parse_constant=_strict_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise Rejection(400, f"invalid JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
        raise Rejection(400, 'the body must be an object with a "batch" list')
    batch: list[Any] = document["batch"]
    if len(batch) > MAX_BATCH_MESSAGES:
        raise Rejection(
            400, f"batch holds {len(batch)} messages, the limit is {MAX_BATCH_MESSAGES}"
        )
    sent_at = document.get("sentAt")
    problem = iso_problem(sent_at, "sentAt")
    if problem:
        raise Rejection(400, problem)
    problems: list[str] = []
    for index, message in enumerate(batch):
        if not isinstance(message, dict):
            problems.append(f"batch[{index}]: a message must be an object")
            continue
        found = message_problems(message)
        if "timestamp" in message:
            stamp = iso_problem(message["timestamp"], "timestamp")
            if stamp:
                found.append(stamp)
        size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_MESSAGE_BYTES:
            found.append(f"message is {size} bytes, the limit is {MAX_MESSAGE_BYTES}")
        problems.extend(f"batch[{index}]: {p}" for p in found)
    if problems:
        raise Rejection(400, "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))
    assert isinstance(sent_at, str)
    return batch, sent_at
