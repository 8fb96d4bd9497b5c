"""The default buffer: a bounded list in this process's memory."""

from __future__ import annotations

import threading
from bisect import bisect_right
from itertools import accumulate

from .base import CLOSED, FULL, Entry

__all__ = ["MemoryBuffer"]


class MemoryBuffer:
    """A bounded FIFO in memory: drop-new when full, never block the caller.

    A plain list: ``append`` to put, one slice and one ``del`` to take a batch. Taking
    from the front moves the entries left behind, a C ``memmove`` of at most
    ``max_size`` pointers once per batch, which costs less than popping a batch of
    thousands off a deque one Python call at a time.
    """

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._items: list[Entry] = []
        self._lock = threading.Lock()
        self._taken = 0  # sequence number of the entry at the head
        self._closed = False

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._taken + len(self._items)

    def put(self, entry: Entry) -> int:
        # The closed check shares the lock with close(), so no put can slip in after
        # close() has looked at what is left to drain.
        with self._lock:
            if self._closed:
                return CLOSED
            size = len(self._items)
            if size >= self._max_size:
                return FULL
            self._items.append(entry)
            return size + 1

    def start(self) -> None:
        pass  # nothing of its own to start: the sender's thread does the work

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def take(
        self, max_count: int, max_bytes: int, before: int | None = None
    ) -> tuple[int, list[Entry]]:
        with self._lock:
            first = self._taken
            items = self._items
            count = min(max_count, len(items))
            if before is not None:
                count = min(count, before - first)
            batch = items[: max(count, 0)]
            if batch:
                # Each entry costs its bytes plus the comma that joins it: entry i ends
                # at ends[i] + i + 1. Prefix sums and the search run in C.
                ends = list(accumulate(map(len, batch)))
                if ends[-1] + len(batch) > max_bytes:
                    fits = bisect_right(range(len(batch)), max_bytes, key=lambda i: ends[i] + i + 1)
                    del batch[max(fits, 1) :]  # the first goes even if alone too large
                del items[: len(batch)]
                self._taken += len(batch)
            return first, batch

    def settle(self, start: int, end: int, final: bool) -> str:
        return ""  # the entries left with take()

    def kept_note(self) -> str:
        return ""  # memory keeps nothing

    def __len__(self) -> int:
        return len(self._items)
