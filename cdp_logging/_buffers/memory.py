"""The default buffer: a bounded list in this process's memory."""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import deque
from itertools import accumulate

from .._core.options import DEFAULT_MAX_QUEUE_BYTES
from .base import CLOSED, FULL, Entry, Local

__all__ = ["MemoryBuffer"]


class MemoryBuffer(Local):
    """A bounded FIFO in memory: drop-new when full, never block the caller.

    A plain list: ``append`` to put, one slice and one ``del`` to take a batch. Taking
    from the front moves the entries left behind, a C ``memmove`` of at most
    ``max_size`` pointers once per batch, which costs less than popping a batch of
    thousands off a deque one Python call at a time.

    Bounded twice: by the count of messages and by their serialised bytes (one integer
    add under the lock put already takes), so large messages cannot hold hundreds of MB.

    A signal handler that logs runs in the main thread between two bytecodes, possibly
    while that thread is inside ``put`` or ``take`` with the lock held. With a ``Lock``
    the handler's ``put`` would wait forever for its own thread. The lock is an
    ``RLock``, so the handler gets in; ``_busy`` (set only while the list or the byte
    count may be half changed) tells it that its thread was interrupted in here, and it
    leaves its entry in ``_reentered``, which the interrupted call adds to the list
    before it lets go of the lock. Other threads still simply wait for the lock.
    """

    def __init__(self, max_size: int, max_bytes: int = DEFAULT_MAX_QUEUE_BYTES) -> None:
        self._max_size = max_size
        self._max_bytes = max_bytes
        self._items: list[Entry] = []
        self._bytes = 0  # the data bytes of _items
        self._lock = threading.RLock()
        self._busy = False
        self._reentered: deque[Entry] = deque()
        self._taken = 0  # sequence number of the entry at the head
        self._closed = False

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._taken + len(self._items) + len(self._reentered)

    def put(self, entry: Entry) -> int:
        # The closed check shares the lock with close(), so no put can slip in after
        # close() has looked at what is left to drain. acquire/release rather than
        # `with`: the context manager's __exit__ call costs as much as the lock round
        # trip itself (~1,000 instructions under callgrind), at every logging call.
        # acquire() inside the try, and release() told apart from "never taken" by its
        # RuntimeError: a signal handler that raises (Ctrl-C) may run right after any C
        # call returns (acquire() having taken the lock), or interrupt an acquire()
        # still waiting (this thread holds nothing: release() raises, and nothing is
        # released). No check between an "is it mine?" and the release: one there
        # would skip the release and leave the lock held for good. Nested puts (a
        # handler's, inside this one) take it twice and release once each; an acquire
        # by a thread that already holds it never waits, so is never interrupted.
        lock = self._lock
        try:
            lock.acquire()
            if self._busy:
                return self._put_reentered(entry)
            self._busy = True
            try:
                if self._closed:
                    return CLOSED
                size = len(self._items)
                total = self._bytes + len(entry)
                if size >= self._max_size or total > self._max_bytes:
                    return FULL
                self._items.append(entry)
                self._bytes = total
                return size + 1
            finally:
                self._busy = False
                if self._reentered:
                    self._add_reentered()
        finally:
            try:  # noqa: SIM105 - suppress() would be a context manager per call again
                lock.release()
            except RuntimeError:  # acquire() was interrupted while it still waited
                pass

    def _put_reentered(self, entry: Entry) -> int:
        """*put* from a signal handler that interrupted this thread inside put or take."""
        if self._closed:
            return CLOSED
        size = len(self._items) + len(self._reentered)
        if size >= self._max_size or self._bytes + len(entry) > self._max_bytes:
            return FULL
        self._reentered.append(entry)  # one atomic step: added by the interrupted call
        return size + 1

    def _add_reentered(self) -> None:
        """Move what signal handlers left into the list; with the lock held, not busy."""
        reentered = self._reentered
        while reentered:  # bounded: a handler adds only while we are busy, below
            self._busy = True
            while reentered:
                entry = reentered.popleft()
                self._items.append(entry)
                self._bytes += len(entry)
            self._busy = False

    def start(self) -> None:
        pass  # nothing of its own to start: the sender's thread does the work

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def take(
        self, max_count: int, max_bytes: int, before: int | None = None
    ) -> tuple[int, list[Entry]]:
        with self._lock:
            if self._busy:  # a signal handler's flush: the interrupted call owns the list
                return self._taken, []
            self._busy = True
            try:
                first = self._taken
                items = self._items
                count = min(max_count, len(items))
                if before is not None:
                    count = min(count, before - first)
                if count == len(items) and count and self._bytes + count <= max_bytes:
                    # Everything queued fits (each entry and its comma): taken whole, its
                    # bytes known from the puts. Measuring each entry again below costs
                    # ~560 instructions per message on the sender thread (callgrind).
                    self._items = []
                    self._bytes = 0
                    self._taken += count
                    return first, items
                batch = items[: max(count, 0)]
                if batch:
                    # Each entry costs its bytes plus the comma that joins it. A sum (in C,
                    # no list) says whether they all fit; only when not, the prefix sums:
                    # entry i ends at ends[i] + i + 1, and the search runs in C too.
                    size = sum(map(len, batch))
                    if size + len(batch) > max_bytes:
                        ends = list(accumulate(map(len, batch)))
                        fits = bisect_right(
                            range(len(batch)), max_bytes, key=lambda i: ends[i] + i + 1
                        )
                        del batch[max(fits, 1) :]  # the first goes even if alone too large
                        size = ends[len(batch) - 1]
                    del items[: len(batch)]
                    self._bytes -= size
                    self._taken += len(batch)
                return first, batch
            finally:
                self._busy = False
                if self._reentered:
                    self._add_reentered()

    def settle(self, start: int, end: int, final: bool) -> str:
        return ""  # the entries left with take()

    def kept_note(self) -> str:
        return ""  # memory keeps nothing

    def __len__(self) -> int:
        return len(self._items) + len(self._reentered)
