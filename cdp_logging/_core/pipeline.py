"""The pipeline a user configures: process-wide ``context``, ``redact`` and ``before_send``.

With none of the three configured, a client never comes here: it calls
``calls.build`` directly, decided once at construction (``make_build``), so the
logging call costs what it did before. With any of them, ``Pipeline.build`` takes the
call's place in the same spot, at the call, in the caller's thread.

The order is the contract's: the message is built as a dict (what ``calls.build``
would send, library context, timestamp and messageId included), ``redact`` removes
keys before anything else sees it (the hooks, the validation, an error report, stderr,
a test capture), then each ``before_send`` hook in turn, then the protocol's checks
and serialisation. ``context`` alone keeps ``calls.build``'s text path: it only
changes the fields the call hands over, which costs a dict merge, not a second route.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

from . import serialise as _json

try:  # the `fast` extra, as in serialise: only to read our own JSON back quickly
    import orjson
except ImportError:
    orjson = None  # type: ignore[assignment]
from .calls import (
    _ID,
    _KINDS,
    _LIBRARY,
    _OBJECT,
    _REQUIRED,
    _SPECS,
    _TEXT,
    _identifier,
    _text,
    _timestamp,
    build,
    iso_timestamp,
    name_of,
    new_message_id,
    unknown_call_type,
    unknown_keys,
)
from .context import BOUND
from .errors import BEFORE_SEND, INVALID_MESSAGE, MESSAGE_TOO_LARGE, REENTRANT, DeliveryError
from .protocol import (
    CALL_TYPES,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_ID_CHARS,
    message_problems,
    timestamp_problem,
    value_problems,
)

__all__ = [
    "FILTERED",
    "Build",
    "Hook",
    "Pipeline",
    "Redactor",
    "make_build",
    "parse_before_send",
    "parse_context",
    "parse_redact",
]

Hook = Callable[[dict[str, Any]], "dict[str, Any] | None"]
Build = Callable[..., "bytes | DeliveryError | None"]

#: What ``Pipeline.build`` returns for a message a hook dropped (``filtered``).
FILTERED: Final = None

_MAX_REASON_CHARS: Final = 200
# Every digit to "0", everything else to " ": then a run of 19 digits is one substring
# search (C), where a regex scans ~6x slower on a message full of hex digits.
_DIGITS_TO_ZERO: Final = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_DIGIT_RUN: Final = b"0" * 19
# Wire key -> the exact type the quick check expects (the full rules accept more).
_EXACT_TYPES: Final = {wire: dict if kind == _OBJECT else str for wire, kind in _KINDS.items()}


def parse_before_send(value: object) -> tuple[Hook, ...]:
    """A callable or a list of callables, in the order they run; None for none."""
    if value is None:
        return ()
    hooks = [value] if callable(value) else value
    if isinstance(hooks, (str, bytes, Mapping)) or not isinstance(hooks, Iterable):
        raise ValueError(
            f"before_send must be a callable or a list of callables, got {type(value).__name__}"
        )
    # By index, not by iteration: dictConfig hands a list over as a ConvertingList,
    # which resolves "ext://module.function" only when an item is indexed.
    parsed = tuple(hooks[i] for i in range(len(hooks))) if isinstance(hooks, list) else tuple(hooks)
    for hook in parsed:
        if not callable(hook):
            raise ValueError(
                f"before_send must hold only callables, got {type(hook).__name__} "
                "(in dictConfig, write ext://module.function)"
            )
    return parsed


def parse_redact(value: object) -> tuple[str, ...]:
    """Dotted paths; a string is one path or several separated by commas (config files)."""
    if value is None:
        return ()
    items: Iterable[object]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = value
    else:
        raise ValueError(f"redact must be a list of dotted paths, got {type(value).__name__}")
    paths = []
    for item in items:
        if not isinstance(item, str) or not item or any(not part for part in item.split(".")):
            raise ValueError(
                f"redact paths are dotted keys such as 'traits.email' or 'properties.*token*', "
                f"got {item!r}"
            )
        paths.append(item)
    return tuple(paths)


def parse_context(value: object) -> dict[str, Any] | None:
    """A mapping of JSON values, frozen now as its JSON form (later changes do not leak in)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"context must be a mapping, got {type(value).__name__}")
    if "library" in value:
        raise ValueError("context must not hold 'library': context.library names this library")
    frozen = _json.decode(_json.dumps(dict(value)))
    if not isinstance(frozen, dict) or not frozen:
        raise ValueError(f"context must be a non-empty mapping, got {value!r}")
    return frozen


# -- redact ----------------------------------------------------------------------------


class _Node:
    """One level of the compiled paths: the keys named exactly, the patterns, and all
    patterns as one alternation, so a key that matches none costs one regex call."""

    __slots__ = ("any_pattern", "exact", "patterns")

    def __init__(self, tree: dict[str, Any]) -> None:
        self.exact: dict[str, tuple[bool, _Node | None]] = {}
        patterns: list[tuple[re.Pattern[str], bool, _Node | None]] = []
        for segment, child in tree.items():
            if segment == "":
                continue
            ends = "" in child
            below = _Node(child) if len(child) > (1 if ends else 0) else None
            if "*" in segment:
                text = ".*".join(re.escape(part) for part in segment.split("*"))
                patterns.append((re.compile(text, re.DOTALL), ends, below))
            else:
                self.exact[segment] = (ends, below)
        self.patterns = tuple(patterns)
        self.any_pattern = (
            re.compile("|".join(f"(?:{p.pattern})" for p, _, _ in patterns), re.DOTALL)
            if patterns
            else None
        )


class Redactor:
    """Dotted paths compiled once into a tree; removing keys copies only what it changes.

    A segment is a key, or a pattern in which ``*`` stands for any run of characters
    (case-sensitive, as keys are). The caller's dicts are never changed: a dict on a
    path that matched is copied before a key leaves it, and only then.
    """

    def __init__(self, paths: Iterable[str]) -> None:
        tree: dict[str, Any] = {}
        for path in paths:
            node = tree
            for segment in path.split("."):
                node = node.setdefault(segment, {})
            node[""] = True  # the path ends here: remove the key itself
        self._root = _Node(tree)

    def apply(self, message: dict[str, Any]) -> dict[str, Any]:
        """*message* without the matching keys (a new dict when one matched)."""
        # A dict in, a dict out: _walk returns its argument or a dict copy of it.
        return cast("dict[str, Any]", _walk(message, self._root))


def _walk(mapping: Mapping[Any, Any], node: _Node) -> Mapping[Any, Any]:
    result: dict[Any, Any] | None = None
    for key, (ends, below) in node.exact.items():
        if key in mapping:
            result = _apply_rule(mapping, result, key, ends, below)
    if node.any_pattern is not None:
        for key in list(mapping):
            if type(key) is str and node.any_pattern.fullmatch(key):
                for pattern, ends, below in node.patterns:
                    if pattern.fullmatch(key):
                        result = _apply_rule(mapping, result, key, ends, below)
    return mapping if result is None else result


def _apply_rule(
    mapping: Mapping[Any, Any],
    result: dict[Any, Any] | None,
    key: Any,
    ends: bool,
    below: _Node | None,
) -> dict[Any, Any] | None:
    """One rule on *key*: remove it, or walk into its mapping; copy *mapping* on change."""
    current = mapping if result is None else result
    if key not in current:
        return result  # removed by an earlier rule
    if ends:
        result = dict(mapping) if result is None else result
        del result[key]
        return result
    value = current[key]
    if below is None or not isinstance(value, Mapping):
        return result
    new = _walk(value, below)
    if new is not value:
        result = dict(mapping) if result is None else result
        result[key] = new
    return result


# -- the pipeline ----------------------------------------------------------------------


class Pipeline:
    """``context``, ``redact`` and ``before_send`` around one client's build.

    Args:
        context: The process-wide context, already frozen by ``parse_context``.
        redact: Dotted paths (``parse_redact``).
        hooks: The ``before_send`` callables, in order.
        scrub: Removes secrets from text we did not write (a hook's exception).
    """

    def __init__(
        self,
        context: dict[str, Any] | None,
        redact: tuple[str, ...],
        hooks: tuple[Hook, ...],
        scrub: Callable[[str], str],
    ) -> None:
        self._context = context
        self._redactor = Redactor(redact) if redact else None
        self._hooks = hooks
        self._scrub = scrub
        self._dict_path = bool(redact or hooks)
        # Threads running a hook now: a hook that logs an analytics record would
        # otherwise run itself again, without end.
        self._in_hook: set[int] = set()

    def build(
        self, call_type: object, fields: Mapping[str, Any], created: float, strict: bool
    ) -> bytes | DeliveryError | None:
        """``calls.build``'s result, or None when a hook dropped the message."""
        if self._context is not None:
            fields = self._with_context(fields)
        if not self._dict_path:
            return build(call_type, fields, created, strict=strict)
        ident = threading.get_ident()
        if ident in self._in_hook:
            return DeliveryError(
                REENTRANT,
                f"a {name_of(call_type)} message made inside a before_send hook is not sent "
                "(it would run the hooks again without end); return the message from the hook "
                "instead",
            )
        message, unknown, stamp = _message(call_type, fields, created, strict=strict)
        if self._redactor is not None:
            message = self._redactor.apply(message)
        # The same refusals, in the same order and words, as ``calls.build``: the
        # options a client is configured with must not change what is refused, or why.
        if type(call_type) is not str or call_type not in CALL_TYPES:
            return _invalid(unknown_call_type(call_type), message)
        if unknown:
            return _invalid(unknown_keys(call_type, unknown), message)
        if self._hooks:
            # Values first, while they are still what the caller gave: the JSON copy the
            # hooks get turns bytes, objects and huge ints into text the checks would pass.
            problems = value_problems(message)
            if problems:
                return _invalid(f"{call_type}: {'; '.join(problems)}", message)
            # The hooks get the message as it would go on the wire, a JSON copy of its
            # own: nothing they change in place, however deep, reaches the application's
            # dicts, the bound context of the request or the process-wide context.
            message = _wire_copy(_json.dumps(message))
        return self._finish(message, stamp, ident)

    def _finish(
        self, message: dict[str, Any], stamp: str | None, ident: int
    ) -> bytes | DeliveryError | None:
        """Run the hooks on *message* (ours to change), then check and serialise it."""
        if self._hooks:
            self._in_hook.add(ident)
            try:
                result = self._run_hooks(message)
            finally:
                self._in_hook.discard(ident)
            if not isinstance(result, dict):
                return result
            message = result
        if not _looks_valid(message, stamp):  # the quick check suspects; the rules decide
            problems = message_problems(message)
            if problems:
                return _invalid(f"{message.get('type')}: {'; '.join(problems)}", message)
        data = _json.dumps(message)
        if len(data) > MAX_MESSAGE_BYTES:
            return DeliveryError(
                MESSAGE_TOO_LARGE,
                f"{message.get('type')} message is {len(data):,} bytes serialised; the limit "
                f"is {MAX_MESSAGE_BYTES:,}: send less in properties/traits/context",
                messages=[_json.to_jsonable(message)],
            )
        return data

    def _run_hooks(self, message: dict[str, Any]) -> dict[str, Any] | DeliveryError | None:
        for index, hook in enumerate(self._hooks):
            given = message
            try:
                returned = hook(message)
            except Exception as error:  # noqa: BLE001 - a user's hook: report, never raise
                text = self._scrub(str(error))[:_MAX_REASON_CHARS]
                return self._hook_error(
                    hook, index, f"raised {type(error).__name__}: {text}", given
                )
            if returned is None:
                return FILTERED
            if not isinstance(returned, Mapping):
                return self._hook_error(
                    hook,
                    index,
                    f"returned {type(returned).__name__}; a hook returns the message (a dict) "
                    "or None to drop it",
                    given,
                )
            message = returned if type(returned) is dict else dict(returned)
        return message

    def _hook_error(
        self, hook: Hook, index: int, what: str, message: dict[str, Any]
    ) -> DeliveryError:
        name = getattr(hook, "__qualname__", None) or type(hook).__name__
        return DeliveryError(
            BEFORE_SEND,
            f"before_send hook {index + 1} ({name}) {what}; the message is not sent",
            messages=[_json.to_jsonable(message)],
        )

    def _with_context(self, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        """The fields with the process-wide context under the bound and the call's own.

        ``calls.build`` lays the bound context under the call's; handing it the three
        merged (process, then bound, then the call's) gives the same result with the
        process-wide keys at the bottom, without a second route through build.
        """
        process = self._context
        assert process is not None
        own = fields.get("context")
        if own is not None and not isinstance(own, Mapping):
            return fields  # left for build to refuse, with its reason
        bound = BOUND.get()
        below = bound.context if bound is not None and bound.context else None
        merged = dict(process)
        if below:
            merged.update(below)
        if own:
            merged.update(own)
        return {**fields, "context": merged}


def _looks_valid(message: dict[str, Any], stamp: object) -> bool:
    """The protocol's rules for the common case, cheaply: exact types, ids present, and
    a timestamp that is still the one we wrote. False sends the message to
    ``message_problems``, which says what (if anything) is wrong."""
    kind = message.get("type")
    required = _REQUIRED.get(kind) if type(kind) is str else None
    if required is None:
        return False
    for key, value in message.items():
        expected = _EXACT_TYPES.get(key)
        if expected is not None and type(value) is not expected:
            return False
    message_id = message.get("messageId")
    if not message_id or len(message_id) > MAX_MESSAGE_ID_CHARS:
        return False
    timestamp = message.get("timestamp")
    if timestamp != stamp and (
        timestamp is None or timestamp_problem(timestamp, "timestamp") is not None
    ):
        return False
    for group in required:
        for key in group:
            if message.get(key):
                break
        else:
            return False
    return True


def _wire_copy(data: bytes) -> dict[str, Any]:
    """*data* (our own JSON) back as a dict: with orjson when the fast extra is there,
    three times quicker than the standard library, unless a run of 19 or more digits
    could be an integer beyond 64 bits, which orjson reads as a float (a changed value)
    and the standard library reads exactly. A long digit run inside a string or a
    float only costs the slower read."""
    if orjson is not None and _LONG_DIGIT_RUN not in data.translate(_DIGITS_TO_ZERO):
        copied: dict[str, Any] = orjson.loads(data)
        return copied
    return _json.decode(data)


def _invalid(reason: str, message: Mapping[str, Any]) -> DeliveryError:
    return DeliveryError(INVALID_MESSAGE, reason, messages=[_json.to_jsonable(dict(message))])


def _message(
    call_type: object, fields: Mapping[str, Any], created: float, *, strict: bool
) -> tuple[dict[str, Any], list[str], str | None]:
    """The whole wire message as a dict, as ``calls.build`` would send it; unknown keys;
    the timestamp we wrote (None when the call gave its own, which must be checked).

    The same per-key conversions as build (ids to text, datetimes to ISO 8601). The
    caller's mappings are shared, not copied: nothing on the way changes them.
    """
    message: dict[str, Any] = {"type": call_type}
    unknown: list[str] = []
    for key, value in fields.items():
        spec = _SPECS.get(key)
        if spec is None:
            if strict and key != "type":
                unknown.append(key)
            continue
        if value is None:
            continue
        wire, kind = spec
        # Mappings are kept as given (redact copies what it changes; hooks get JSON).
        if kind != _OBJECT and type(value) is not str:
            value = (
                _identifier(value)
                if kind == _ID
                else _text(value)
                if kind == _TEXT
                else _timestamp(value)
            )
        message[wire] = value
    bound = BOUND.get()
    if bound is not None:
        for wire, value in bound.ids.items():
            message.setdefault(wire, value)
        if bound.context:
            own = message.get("context")
            if own is None or isinstance(own, Mapping):
                message["context"] = {**bound.context, **(own or {})}
        if bound.integrations:
            own = message.get("integrations")
            if own is None or isinstance(own, Mapping):
                message["integrations"] = {**bound.integrations, **(own or {})}
    context = message.get("context")
    if context is None:
        message["context"] = {"library": _LIBRARY}
    elif isinstance(context, Mapping):
        message["context"] = {**context, "library": _LIBRARY}
    stamp = None
    if "timestamp" not in message:
        stamp = message["timestamp"] = iso_timestamp(created)
    if "messageId" not in message:
        message["messageId"] = new_message_id()
    return message, unknown, stamp


def make_build(
    context: dict[str, Any] | None,
    redact: tuple[str, ...],
    hooks: tuple[Hook, ...],
    scrub: Callable[[str], str],
) -> Build:
    """The build a client calls at every message: ``calls.build`` itself when nothing is
    configured (no extra frame, no check), else a ``Pipeline``'s."""
    if context is None and not redact and not hooks:
        return build
    return Pipeline(context, redact, hooks, scrub).build
