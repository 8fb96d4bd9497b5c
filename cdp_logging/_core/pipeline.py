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
from typing import Any, Final

from . import serialise as _json
from .calls import (
    _ID,
    _LIBRARY,
    _OBJECT,
    _SPECS,
    _TEXT,
    PAYLOAD_KEYS,
    _identifier,
    _text,
    _timestamp,
    build,
    iso_timestamp,
    new_message_id,
)
from .context import BOUND
from .errors import BEFORE_SEND, INVALID_MESSAGE, MESSAGE_TOO_LARGE, REENTRANT, DeliveryError
from .protocol import CALL_TYPES, MAX_MESSAGE_BYTES, message_problems

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


class Redactor:
    """Dotted paths compiled once into a tree; removing keys copies only what it changes.

    A segment is a key, or a pattern in which ``*`` stands for any run of characters
    (case-sensitive, as keys are). The caller's dicts are never changed: a dict on a
    path that matched is copied before a key leaves it.
    """

    def __init__(self, paths: Iterable[str]) -> None:
        self._tree: dict[str, Any] = {}
        for path in paths:
            node = self._tree
            for segment in path.split("."):
                node = node.setdefault(segment, {})
            node[""] = True  # the path ends here: remove the key itself
        self._compiled = self._compile(self._tree)

    def _compile(self, tree: dict[str, Any]) -> tuple[Any, ...]:
        exact: dict[str, tuple[bool, Any]] = {}
        patterns: list[tuple[re.Pattern[str], bool, Any]] = []
        for segment, child in tree.items():
            if segment == "":
                continue
            ends = "" in child
            below = self._compile(child) if len(child) > (1 if ends else 0) else None
            if "*" in segment:
                text = ".*".join(re.escape(part) for part in segment.split("*"))
                patterns.append((re.compile(text, re.DOTALL), ends, below))
            else:
                exact[segment] = (ends, below)
        return exact, tuple(patterns)

    def apply(self, message: dict[str, Any]) -> dict[str, Any]:
        """*message* without the matching keys (a new dict when one matched)."""
        walked: dict[str, Any] = self._walk(message, self._compiled)
        return walked

    def _walk(self, mapping: Mapping[str, Any], compiled: tuple[Any, ...]) -> Any:
        exact, patterns = compiled
        result: dict[str, Any] | None = None
        for key, value in mapping.items():
            rules = []
            hit = exact.get(key) if type(key) is str else None
            if hit is not None:
                rules.append(hit)
            if patterns and type(key) is str:
                for pattern, ends, below in patterns:
                    if pattern.fullmatch(key):
                        rules.append((ends, below))
            if not rules:
                continue
            if result is None:
                result = dict(mapping)
            if any(ends for ends, _ in rules):
                del result[key]
                continue
            if isinstance(value, Mapping):
                new = value
                for _, below in rules:
                    new = self._walk(new, below)
                if new is not value:
                    result[key] = new
        return mapping if result is None else result


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
        self, call_type: object, fields: Mapping[str, Any], created: float, *, strict: bool
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
                f"a {call_type} message made inside a before_send hook is not sent (it would "
                "run the hooks again without end); return the message from the hook instead",
            )
        message, unknown = _message(call_type, fields, created, strict=strict)
        if self._redactor is not None:
            message = self._redactor.apply(message)
        if unknown:
            return _invalid(
                f"{call_type}: unknown payload key(s) {', '.join(map(repr, sorted(unknown)))}; "
                f"known keys are {', '.join(sorted(PAYLOAD_KEYS))}",
                message,
            )
        if call_type not in CALL_TYPES:
            return _invalid(
                f"unknown call type {call_type!r}: give one of {', '.join(CALL_TYPES)} "
                "as the log message or as cdp['type']",
                message,
            )
        if self._hooks:
            self._in_hook.add(ident)
            try:
                result = self._run_hooks(message)
            finally:
                self._in_hook.discard(ident)
            if not isinstance(result, dict):
                return result
            message = result
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


def _invalid(reason: str, message: Mapping[str, Any]) -> DeliveryError:
    return DeliveryError(INVALID_MESSAGE, reason, messages=[_json.to_jsonable(dict(message))])


def _message(
    call_type: object, fields: Mapping[str, Any], created: float, *, strict: bool
) -> tuple[dict[str, Any], list[str]]:
    """The whole wire message as a dict, as ``calls.build`` would send it; unknown keys.

    The same per-key conversions as build (ids to text, datetimes to ISO 8601); the
    object members are copied, one level, so a hook that changes ``properties`` in
    place changes our message, never the caller's dict.
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
        if kind == _OBJECT:
            if isinstance(value, Mapping):
                value = dict(value)
        elif type(value) is not str:
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
        message["context"] = {"library": dict(_LIBRARY)}
    elif isinstance(context, Mapping):
        message["context"] = {**context, "library": dict(_LIBRARY)}
    if "timestamp" not in message:
        message["timestamp"] = iso_timestamp(created)
    if "messageId" not in message:
        message["messageId"] = new_message_id()
    return message, unknown


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
