"""DeliveryError: the one exception type a user ever handles.

It is never raised into the application by a logging call; it reaches the app through
``on_error``, a call's Future, or a call's callback. Every instance names what happened
(``code``) and what a person can do about it (``reason``).
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias, get_args

__all__ = [
    "BEFORE_SEND",
    "CLOSED",
    "CODES",
    "HTTP_STATUS",
    "INTERNAL_ERROR",
    "INVALID_MESSAGE",
    "KEPT",
    "MESSAGE_TOO_LARGE",
    "NETWORK",
    "PLAN_VIOLATION",
    "QUEUE_FULL",
    "REENTRANT",
    "SHUTDOWN_TIMEOUT",
    "DeliveryError",
    "ErrorCode",
]

QUEUE_FULL: Final = "queue_full"
MESSAGE_TOO_LARGE: Final = "message_too_large"
INVALID_MESSAGE: Final = "invalid_message"
HTTP_STATUS: Final = "http_status"
NETWORK: Final = "network"
CLOSED: Final = "closed"
# A bug of ours (or of a custom transport) stopped a batch half way; reported rather
# than left unsettled, so flush() and close() still end and nothing is lost unseen.
INTERNAL_ERROR: Final = "internal_error"
# Distinct from CLOSED: the message was accepted, but close() or interpreter exit ran
# out of time before the server took it. The fix differs (raise shutdown_timeout,
# look at the network) from CLOSED's (stop logging after close()).
SHUTDOWN_TIMEOUT: Final = "shutdown_timeout"
# A call made while we were sending, from inside one of our callbacks (on_flush,
# on_error, a Future's or call's callback): sending it would start a loop, each delivery
# logging one more event (https://github.com/open-telemetry/opentelemetry-python/issues/4255
# is the same loop in another library).
REENTRANT: Final = "reentrant"
# Not delivered by this process, and not lost: kept in a durable buffer (an SQLite file,
# a Redis stream) for another process to deliver, which this one will not hear about.
KEPT: Final = "kept"
# The message breaks the tracking plan and plan_mode="drop" refused it at the call
# (with plan_mode="warn" it is delivered, and only counted and told).
PLAN_VIOLATION: Final = "plan_violation"


# A before_send hook raised (or returned something that is not a message): the message
# is not sent, since sending it unfiltered could send what the hook exists to remove.
BEFORE_SEND: Final = "before_send"


# Every code above, as a type: a function that branches on codes can be checked by mypy
# for a misspelt one. Kept beside the constants so a new code is added in one place.
ErrorCode: TypeAlias = Literal[
    "queue_full",
    "message_too_large",
    "invalid_message",
    "http_status",
    "network",
    "closed",
    "internal_error",
    "shutdown_timeout",
    "reentrant",
    "kept",
    "before_send",
    "plan_violation",
]
CODES: Final[frozenset[str]] = frozenset(get_args(ErrorCode))


class DeliveryError(Exception):
    """Messages that were not delivered, and why.

    Args:
        code: A short, stable string to branch on, such as ``queue_full``.
        reason: A sentence a person can act on. It never contains the write key.
        status: The HTTP status the server answered, when there was one.
        messages: The wire messages affected, as dicts.

    .. versionadded:: 0.1.0
    """

    code: str
    reason: str
    status: int | None
    messages: list[dict[str, Any]]

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        status: int | None = None,
        messages: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.status = status
        self.messages = messages if messages is not None else []

    def __str__(self) -> str:
        count = len(self.messages)
        noun = "message" if count == 1 else "messages"
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.code}{status}: {self.reason} [{count} {noun}]"

    def __repr__(self) -> str:
        return (
            f"DeliveryError(code={self.code!r}, reason={self.reason!r}, "
            f"status={self.status!r}, messages=<{len(self.messages)}>)"
        )
