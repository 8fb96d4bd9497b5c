"""The process-wide capture switch behind ``cdp_logging.testing.capture_messages``.

Clients consult it at the one place they accept a built message, so a capture sees
exactly the bytes that would have been queued (same validation, ids, context and
timestamps) and those bytes never reach a sender, not even after the block.
"""

from __future__ import annotations

from typing import Any

from .process import capture_lock, capture_sinks
from .serialise import decode

__all__ = ["capturing", "offer", "start", "stop"]

# The state is process-wide, so it lives with the rest of it (``process``).
_lock = capture_lock
_sinks = capture_sinks


def capturing() -> bool:
    """Say whether any capture is active; a lock-free read on the hot path."""
    return bool(_sinks)


def offer(built: bytes) -> dict[str, Any] | None:
    """Hand *built* to every active capture; return its dict if one took it."""
    with _lock:
        if not _sinks:
            return None
        message = decode(built)
        for sink in _sinks:
            sink.append(message)
        return message


def start(sink: list[dict[str, Any]]) -> None:
    with _lock:
        _sinks.append(sink)


def stop(sink: list[dict[str, Any]]) -> None:
    with _lock:
        for index in range(len(_sinks) - 1, -1, -1):
            if _sinks[index] is sink:
                del _sinks[index]
                break
