"""Strict checks of one batch request, each failure a reason a person can act on.

The real services answer 200 to most malformed events and drop them, so a client bug
shows up weeks later as missing data. This collector answers 400 and says why, so the
same bug fails a test today. The per-message rules come from ``cdp_logging._core.protocol``
(shared with the client, so the two cannot drift apart); only what depends on the
request as a whole (auth, framing, size, JSON, ``sentAt``, date syntax) lives here.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .._core.protocol import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    message_problems,
    timestamp_problem,
)
from ._ingest import non_finite_paths

__all__ = [
    "MAX_LISTED_PROBLEMS",
    "Rejected",
    "auth_problem",
    "batch_messages",
    "body_size_problem",
    "content_type_problem",
    "decode_body",
    "item_problems",
    "lenient_auth_problem",
    "lenient_marks",
    "lenient_payload_problem",
    "load_payload",
    "payload_problem",
    "strict_auth_problem",
    "timestamp_problem",
]

# A reason naming every problem of a 2,500-message batch would be a megabyte of text;
# the first few are enough to find the bug.
MAX_LISTED_PROBLEMS: Final = 20
# Values echoed back in a reason are cut, so a reason stays one readable line.
_MAX_ECHO_CHARS: Final = 60
# A gzip bomb is counted only this far: far enough to say "too big", cheap to reach.
_MAX_COUNTED_BYTES: Final = 64 * MAX_BATCH_BYTES
_INFLATE_CHUNK: Final = 64 * 1024
# The collector's own limit (neither service documents one): the body, its batch and
# a message are three levels, so this leaves properties nearly a hundred. Deeper JSON
# would overflow Python's stack in json, copy and the viewer, each of which recurses.
MAX_NESTING: Final = 100


# Written out rather than left to datetime.fromisoformat, which accepts different
# strings on Python 3.10 (no "Z", fixed fraction widths) and 3.11+ (week dates, no
# separators): the collector must judge a client the same way on every Python.
class Rejected(Exception):
    """The request cannot be accepted: answer *status* with *reason*.

    *reason* is sent to the client, so it must never hold the write key.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _echo(value: str) -> str:
    cut = value if len(value) <= _MAX_ECHO_CHARS else value[:_MAX_ECHO_CHARS] + "..."
    return repr(cut)


def auth_problem(header: str | None, write_keys: frozenset[str] | None) -> str | None:
    """Why the Authorization header does not carry an accepted write key, or None.

    The reasons describe the header's shape and never echo the key, because the client
    may log the reason and a key in a log is a leaked key.
    """
    if not header:
        return "missing Authorization header: send HTTP Basic with the write key as user name"
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return "the Authorization header must use HTTP Basic"
    try:
        credentials = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "the Basic credentials are not valid base64 of UTF-8 text"
    user, colon, password = credentials.partition(":")
    if not colon:
        return "the Basic credentials must be 'write_key:' (the colon is required)"
    if password:
        return "the Basic password must be empty: the write key goes in the user name"
    if not user:
        return "the write key (the Basic user name) is empty"
    if write_keys is not None and user not in write_keys:
        return "unknown write key"
    return None


def strict_auth_problem(
    header: str | None, body_key: object, write_keys: frozenset[str] | None
) -> str | None:
    """:func:`auth_problem`, except that with no header at all the body's ``writeKey`` counts.

    Both services document the key in the body as well as in the header, on every
    endpoint; what the strict mode still refuses is a header of the wrong shape.
    """
    if (header is None or not header.strip()) and isinstance(body_key, str) and body_key:
        return None if write_keys is None or body_key in write_keys else "unknown write key"
    return auth_problem(header, write_keys)


def _header_key(header: str | None) -> tuple[str | None, str | None]:
    """The key an Authorization header carries, and why it carries none.

    Basic (key as user name, any password) or Bearer (the token is taken as the key:
    Segment's OAuth clients send a token there, and a write key in the body too).
    """
    if not header or not header.strip():
        return None, None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer":
        return (token, None) if token else (None, "the Bearer token is empty")
    if scheme.lower() != "basic" or not token:
        return None, "the Authorization header must use HTTP Basic or Bearer"
    try:
        credentials = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, "the Basic credentials are not valid base64 of UTF-8 text"
    user = credentials.partition(":")[0]
    return (user, None) if user else (None, "the write key (the Basic user name) is empty")


def lenient_auth_problem(
    header: str | None, body_key: object, write_keys: frozenset[str] | None
) -> str | None:
    """Why neither the header nor the body's ``writeKey`` carries an accepted key, or None.

    The real services take the key as Basic user name, as a Bearer token, or as
    ``writeKey`` in the body (segment-analytics-python 2.3 sends no header at all):
    https://www.twilio.com/docs/segment/connections/sources/catalog/libraries/server/http-api
    Like :func:`auth_problem`, the reasons never echo a key.
    """
    from_header, header_problem = _header_key(header)
    candidates = [key for key in (from_header, body_key) if isinstance(key, str) and key]
    if not candidates:
        return header_problem or (
            "no write key: send it as the Basic user name, a Bearer token, "
            'or "writeKey" in the body'
        )
    if write_keys is not None and not any(key in write_keys for key in candidates):
        return "unknown write key"
    return None


def content_type_problem(header: str | None, *, plain_ok: bool = False) -> str | None:
    """Why the body is declared as something other than JSON, or None.

    A missing Content-Type passes (curl and hand-written tests often leave it out, and
    the body is parsed as JSON anyway); a wrong one, such as the form encoding that
    ``requests`` picks for a dict passed as ``data=``, is a client bug worth naming.
    *plain_ok* lets ``text/plain`` pass: analytics.js sends its JSON so, by design, to
    spare the browser a CORS preflight, and the services read it as JSON.
    """
    if header is None or not header.strip():
        return None
    media_type = header.partition(";")[0].strip().lower()
    if media_type == "text/plain" and plain_ok:
        return None
    if media_type != "application/json":
        return f"Content-Type must be application/json, got {_echo(header)}"
    return None


def _gunzip(raw: bytes) -> tuple[bytes, int]:
    """Inflate every gzip member of *raw*; keep at most one byte over the batch limit.

    Returns what was kept and the decompressed size (counted up to a cap), so the
    caller can report the real size without a small bomb taking the memory.
    """
    kept = bytearray()
    total = 0
    rest = raw
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = rest
        while not inflater.eof:
            chunk = inflater.decompress(pending, _INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            total += len(chunk)
            room = MAX_BATCH_BYTES + 1 - len(kept)
            if room > 0:
                kept += chunk[:room]
            if total > _MAX_COUNTED_BYTES:
                return bytes(kept), total
            if not chunk and not pending:
                raise zlib.error("the gzip stream ends before its end marker")
        rest = inflater.unused_data
    return bytes(kept), total


def decode_body(raw: bytes, content_encoding: str | None) -> tuple[bytes, int]:
    """The request body as the client meant it, and its decompressed size.

    The body returned stops one byte past ``MAX_BATCH_BYTES``; check the size with
    :func:`body_size_problem` before using it.

    Raises:
        Rejected: an unknown encoding or a broken gzip stream.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return raw, len(raw)
    if encoding != "gzip":
        raise Rejected(400, f"unsupported Content-Encoding {_echo(encoding)}: use gzip or none")
    if not raw:
        raise Rejected(400, "the body is empty but Content-Encoding says gzip")
    try:
        return _gunzip(raw)
    except zlib.error as error:
        raise Rejected(400, f"the gzip body cannot be decompressed: {error}") from None


def body_size_problem(size: int) -> str | None:
    """Why a body of *size* bytes (after decompression) is too big, or None."""
    if size > _MAX_COUNTED_BYTES:
        return (
            f"request body is over {_MAX_COUNTED_BYTES} bytes once decompressed, "
            f"the limit is {MAX_BATCH_BYTES}"
        )
    if size > MAX_BATCH_BYTES:
        return f"request body is {size} bytes, the limit is {MAX_BATCH_BYTES}"
    return None


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are Python's extension, not JSON: a batch holding one is rejected
    # whole by strict parsers, which is exactly the reference client's worst defect.
    raise ValueError(f"{name} is not valid JSON")


def load_payload(body: bytes) -> dict[str, Any]:
    """Parse *body* as a JSON object under RFC 8259's rules (UTF-8, no NaN).

    Raises:
        Rejected: not UTF-8, not JSON, or not an object.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected(400, f"the body is not UTF-8: {error}") from None
    try:
        payload = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        raise Rejected(400, f"invalid JSON: {error}") from None
    except RecursionError:
        raise Rejected(400, f"the JSON nests deeper than {MAX_NESTING} levels") from None
    if _too_deep(payload):
        raise Rejected(400, f"the JSON nests deeper than {MAX_NESTING} levels")
    if not isinstance(payload, dict):
        raise Rejected(400, f"the body must be a JSON object, got {type(payload).__name__}")
    return payload


def _too_deep(value: object) -> bool:
    # Iterative, so that judging the depth cannot itself overflow the stack.
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children: Iterable[object]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_NESTING:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def batch_messages(payload: Mapping[str, Any]) -> list[Any]:
    """The ``batch`` list of *payload*, or an empty list when there is none.

    Lenient on purpose: it feeds the request record, which describes rejected
    requests too.
    """
    batch = payload.get("batch")
    return batch if isinstance(batch, list) else []


def item_problems(message: object) -> list[str]:
    """Every rule one item of a batch breaks; empty when it is a valid message.

    The viewer shows these beside each message of a rejected batch, so that the one
    message at fault is told apart from its innocent neighbours.
    """
    if not isinstance(message, dict):
        return [f"a message must be an object, got {type(message).__name__}"]
    problems = message_problems(message)
    infinite = non_finite_paths(message)
    if infinite:
        # Python reads 1e999 as infinity, which no JSON can hold; a JavaScript service
        # reads it the same way and then stores null.
        problems.append(f"{', '.join(infinite)}: a number too large for JSON (1e999 or more)")
    serialised = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    try:
        size = len(serialised.encode("utf-8"))
    except UnicodeEncodeError:
        # json.loads turns an escaped lone surrogate ("\ud800") into a str that no
        # UTF-8 encoder accepts; downstream systems choke on it, so say so here.
        problems.append("a string holds a lone UTF-16 surrogate, which is not valid Unicode")
    else:
        if size > MAX_MESSAGE_BYTES:
            problems.append(f"message is {size} bytes, the limit is {MAX_MESSAGE_BYTES}")
    return problems


def payload_problem(payload: Mapping[str, Any], messages: list[Any] | None = None) -> str | None:
    """Why this batch must be rejected as a whole, or None if every part is valid.

    One bad message rejects the request, unlike the real services, so that a test can
    never pass while a message is being lost. *messages* are the batch's messages as
    read (the batch's ``context`` merged in), judged in place of the raw ones.
    """
    batch = payload.get("batch")
    if "batch" not in payload:
        return 'the body has no "batch" list'
    if not isinstance(batch, list):
        return f'"batch" must be a list, got {type(batch).__name__}'
    if not batch:
        return '"batch" is empty: a client should not send a request with nothing in it'
    if len(batch) > MAX_BATCH_MESSAGES:
        return f"batch holds {len(batch)} messages, the limit is {MAX_BATCH_MESSAGES}"
    if "sentAt" not in payload:
        return "sentAt is required: the ISO 8601 time the request was sent"
    sent_at_problem = timestamp_problem(payload["sentAt"], "sentAt")
    if sent_at_problem is not None:
        return sent_at_problem
    problems = [
        f"batch[{index}]: {problem}"
        for index, message in enumerate(batch if messages is None else messages)
        for problem in item_problems(message)
    ]
    if not problems:
        return None
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    hidden = len(problems) - MAX_LISTED_PROBLEMS
    return f"{listed}; and {hidden} more" if hidden > 0 else listed


def lenient_payload_problem(payload: Mapping[str, Any]) -> str | None:
    """Why even the lenient mode must answer 400: there is no batch to read.

    Everything else (no ``sentAt``, an empty batch, a bad message) is accepted, as the
    real services accept it, and marked instead (see :func:`lenient_marks`).
    """
    if "batch" not in payload:
        return 'the body has no "batch" list'
    batch = payload["batch"]
    if not isinstance(batch, list):
        return f'"batch" must be a list, got {type(batch).__name__}'
    return None


def lenient_marks(message: object) -> list[str]:
    """What the real service would drop or flag in *message*, as it would read it.

    A null stands for an absent field (segment-analytics-python 2.4 sends
    ``"anonymousId": null``), so it is dropped before the protocol's rules are applied;
    what is left breaks the same rules as in the strict mode, and each broken rule is
    a reason the real service would drop the message or keep it wrong (no user id at
    all, no event name, over 32,000 bytes, a timestamp it cannot read).
    """
    if not isinstance(message, dict):
        return item_problems(message)
    present = {key: value for key, value in message.items() if value is not None}
    return item_problems(present)
