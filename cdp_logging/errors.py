"""The error codes a ``DeliveryError`` carries, importable from one public place.

Branch on them by name rather than by string, so a typo is an AttributeError (or, with
``ErrorCode``, a mypy error) instead of a branch that never runs::

    from cdp_logging import errors

    def on_error(error: errors.DeliveryError) -> None:
        if error.code == errors.QUEUE_FULL:
            ...

``CODES`` holds every code; a ``DeliveryError.code`` is always one of them.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from ._core.errors import (
    BEFORE_SEND,
    CLOSED,
    CODES,
    HTTP_STATUS,
    INTERNAL_ERROR,
    INVALID_MESSAGE,
    KEPT,
    MESSAGE_TOO_LARGE,
    NETWORK,
    PLAN_VIOLATION,
    QUEUE_FULL,
    REENTRANT,
    SHUTDOWN_TIMEOUT,
    DeliveryError,
    ErrorCode,
)

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
