"""Identity and request context bound once and carried by every message built meanwhile.

A web request knows who (a user id, an anonymous id) and where (ip, page, user agent)
once, at its start; every event tracked while it runs should carry that without each
call passing it again. The fields live in one ``contextvars.ContextVar``, so they are
per thread and per asyncio task, and ``_calls.build`` reads them with one ``get()``.
"""

from __future__ import annotations

import contextvars
import enum
import functools
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from . import serialise as _json

__all__ = [
    "BOUND",
    "EVER_BOUND",
    "Bound",
    "bind_context",
    "bound_context",
    "clear_context",
    "get_context",
]

_F = TypeVar("_F", bound=Callable[..., Any])

# snake_case (and the wire's camelCase) -> wire key, for the four fields one may bind.
_FIELDS: Final = {
    "user_id": "userId",
    "userId": "userId",
    "anonymous_id": "anonymousId",
    "anonymousId": "anonymousId",
    "context": "context",
    "integrations": "integrations",
}
_PUBLIC: Final = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "context": "context",
    "integrations": "integrations",
}


class Bound:
    """What is bound, in wire spelling, immutable once made (contexts share it).

    ``ids`` holds userId/anonymousId as non-empty strings; ``context`` and
    ``integrations`` are copies, so the app changing its dict afterwards changes nothing
    bound.
    """

    __slots__ = ("context", "context_member", "id_members", "ids", "integrations")

    def __init__(
        self,
        ids: dict[str, str],
        context: dict[str, Any] | None,
        integrations: dict[str, Any] | None,
    ) -> None:
        self.ids = ids
        self.context = context
        self.integrations = integrations
        # As JSON text, once per bind rather than once per call, for build to splice in:
        # encoding a request's page, user agent, ip and ids at every call would be most
        # of what binding costs. Each member starts with its comma.
        self.id_members = tuple(
            (wire, "," + _json.dumps({wire: value}).decode()[1:-1]) for wire, value in ids.items()
        )
        self.context_member = (
            ',"context":{' + _json.dumps(context).decode()[1:-1] if context else None
        )
        if not EVER_BOUND:
            EVER_BOUND.append(True)

    def public(self) -> dict[str, Any]:
        result: dict[str, Any] = {_PUBLIC[key]: value for key, value in self.ids.items()}
        if self.context:
            result["context"] = dict(self.context)
        if self.integrations:
            result["integrations"] = dict(self.integrations)
        return result


BOUND: Final[contextvars.ContextVar[Bound | None]] = contextvars.ContextVar(
    "cdp_logging_bound", default=None
)
# Empty until the first ``Bound`` is made in this process (it never empties again):
# until then nothing can be bound anywhere, and ``build`` skips ``BOUND.get()``, which
# costs ~800 instructions per call (callgrind), in a process that never binds.
EVER_BOUND: Final[list[bool]] = []


def _identifier(name: str, value: object) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{name} must be a string, an integer or a UUID, got {type(value).__name__}")


def _merged(current: Bound | None, fields: Mapping[str, Any]) -> Bound:
    ids = dict(current.ids) if current else {}
    context = dict(current.context) if current and current.context else {}
    integrations = dict(current.integrations) if current and current.integrations else {}
    for key, value in fields.items():
        wire = _FIELDS.get(key)
        if wire is None:
            raise TypeError(
                f"cannot bind {key!r}: give user_id, anonymous_id, context or integrations"
            )
        if wire in ("context", "integrations"):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise TypeError(f"{key} must be a mapping, got {type(value).__name__}")
            target = context if wire == "context" else integrations
            target.update(value)
        else:
            identifier = None if value is None else _identifier(key, value)
            if identifier:
                ids[wire] = identifier
            else:
                ids.pop(wire, None)  # binding None (or "", which no message may carry) unbinds
    context.pop("library", None)  # always the library's own, set by build
    return Bound(ids, context or None, integrations or None)


def bind_context(**fields: Any) -> contextvars.Token[Bound | None]:
    """Bind ``user_id``, ``anonymous_id``, ``context`` or ``integrations`` from now on.

    Fields merge with what is already bound (``context`` and ``integrations`` key by
    key); ``None`` unbinds an id. Returns the token that ``BOUND.reset`` takes, for
    middleware that must restore exactly the state before it.

    Raises:
        TypeError: an unknown field, an id that is not a string, integer or UUID, or a
            ``context``/``integrations`` that is not a mapping: the mistake is shown
            where it is made, not as a lost event later.

    .. versionadded:: 0.2.0
    """
    return BOUND.set(_merged(BOUND.get(), fields))


def clear_context() -> None:
    """Unbind everything in the current thread or task.

    .. versionadded:: 0.2.0
    """
    BOUND.set(None)


def get_context() -> dict[str, Any]:
    """A copy of what is bound, in snake_case (``user_id``, ``anonymous_id``, ...).

    .. versionadded:: 0.2.0
    """
    bound = BOUND.get()
    return bound.public() if bound is not None else {}


class bound_context:
    """Bind fields for a block or for each call of a decorated function, then restore.

    .. versionadded:: 0.2.0
    """

    def __init__(self, **fields: Any) -> None:
        self._fields = fields
        self._tokens: list[contextvars.Token[Bound | None]] = []

    def __enter__(self) -> dict[str, Any]:
        self._tokens.append(bind_context(**self._fields))
        return get_context()

    def __exit__(self, *exc_info: object) -> None:
        BOUND.reset(self._tokens.pop())

    def __call__(self, function: _F) -> _F:
        fields = self._fields

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _scope(fields):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


@contextmanager
def _scope(fields: Mapping[str, Any]) -> Iterator[None]:
    token = BOUND.set(_merged(BOUND.get(), fields))
    try:
        yield
    finally:
        BOUND.reset(token)
