"""The process-wide capture switch behind ``cdp_logging.testing.capture_messages``.

Clients consult it at the one place they accept a built message, so a capture sees
exactly the bytes that would have been queued (same validation, ids, context and
timestamps) and those bytes never reach a sender, not even after the block.
"""

from __future__ import annotations

from typing import Any

from .process import Watcher, capture_active, capture_lock, capture_sinks, capture_watchers
from .serialise import decode

__all__ = ["capturing", "offer", "start", "stop", "unwatch", "watch"]

# The state is process-wide, so it lives with the rest of it (``process``).
_lock = capture_lock
_sinks = capture_sinks
_watchers = capture_watchers
_active = capture_active


def capturing() -> bool:
    """Say whether any capture or watcher is active; a lock-free read on the hot path."""
    return bool(_active)


def offer(built: bytes) -> dict[str, Any] | None:
    """Hand *built* to every active capture; return its dict if one took it."""
    with _lock:
        watchers = list(_watchers)
        if not _sinks and not watchers:
            return None
        message = decode(built)
        for sink in _sinks:
            sink.append(message)
        taken = bool(_sinks)
    for watcher in watchers:  # outside the lock: a watcher may take its own
        watcher(message)
    return message if taken else None


def start(sink: list[dict[str, Any]]) -> None:
    with _lock:
        _sinks.append(sink)
        _active.append(sink)


def watch(watcher: Watcher) -> None:
    with _lock:
        _watchers.append(watcher)
        _active.append(watcher)


def unwatch(watcher: Watcher) -> None:
    with _lock:
        _remove(_watchers, watcher)
        _remove(_active, watcher)


def _remove(items: list[Any], item: object) -> None:
    for index in range(len(items) - 1, -1, -1):
        if items[index] is item:
            del items[index]
            break


def stop(sink: list[dict[str, Any]]) -> None:
    with _lock:
        _remove(_sinks, sink)
        _remove(_active, sink)
