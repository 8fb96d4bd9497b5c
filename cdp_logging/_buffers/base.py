"""The buffer between the logging call and the sender, behind a small interface.

The sender only needs three things from a buffer: add one serialised message without
ever blocking, take a batch bounded by count and bytes, and know how many messages
were ever accepted (so ``flush`` can wait for "everything enqueued before me"), plus
one hook for the durable buffer (``_durable.SQLiteQueue``): ``settle``, called where
the sender settles a range, so a row leaves the file only once its batch is settled.

Entries are the message's JSON bytes, or a ``Tracked`` wrapper when the caller wants
to hear about that one message (a Future or a callback). Logging calls never ask, so the
common entry is a bare ``bytes`` object: the cheapest thing Python can hold.
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_right
from collections.abc import Callable
from concurrent.futures import Future
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from .._core.options import Options

__all__ = [
    "CLOSED",
    "FULL",
    "Entry",
    "MemoryQueue",
    "MessageQueue",
    "Tracked",
    "decode",
    "entry_data",
    "join_entries",
    "make_queue",
]

FULL = 0
CLOSED = -1


class Tracked:
    """A message whose outcome someone is waiting for."""

    __slots__ = ("callback", "data", "future")

    def __init__(
        self,
        data: bytes,
        future: Future[dict[str, Any]] | None,
        callback: Callable[[Exception | None, dict[str, Any]], object] | None,
    ) -> None:
        self.data = data
        self.future = future
        self.callback = callback

    def __len__(self) -> int:
        """The size of its message, as ``len`` of a bare entry is (see ``take``)."""
        return len(self.data)


Entry: TypeAlias = "bytes | Tracked"


def decode(data: bytes) -> dict[str, Any]:
    """A wire message back as a dict, for callbacks, Futures and errors.

    Never on the hot path: only for a call that asked to hear how it ended, an
    ``on_flush`` or ``on_error`` that reads the messages, or a capture.
    """
    message: dict[str, Any] = json.loads(data)
    return message


def entry_data(entry: Entry) -> bytes:
    return entry if type(entry) is bytes else entry.data  # type: ignore[union-attr]


def join_entries(entries: list[Entry]) -> tuple[bytes, bool]:
    """The entries' messages joined by commas, and whether any entry is ``Tracked``.

    Logging calls queue bare bytes, so one C-level join usually does it; it refuses a
    ``Tracked`` entry, which is how a batch learns it has any.
    """
    try:
        return b",".join(entries), False  # type: ignore[arg-type]
    except TypeError:
        return b",".join([entry_data(entry) for entry in entries]), True


class MessageQueue(Protocol):
    """What the sender needs from a buffer."""

    @property
    def accepted(self) -> int:
        """How many entries were ever accepted; the next one gets this sequence number."""

    def put(self, entry: Entry) -> int:
        """Add *entry*; return the new length, FULL or CLOSED (nothing added then)."""

    def close(self) -> None:
        """Refuse every later put; what is queued can still be taken."""

    def take(
        self, max_count: int, max_bytes: int, before: int | None = None
    ) -> tuple[int, list[Entry]]:
        """Remove up to *max_count* entries whose data fits in *max_bytes*.

        Only entries with a sequence number below *before* are taken, when given.
        Returns the sequence number of the first entry taken, and the entries.
        """

    def settle(self, start: int, end: int, final: bool) -> str:
        """Sequence numbers [start, end) are settled: *final* (delivered, or failed for
        good and reported) or not (close() ran out of time, or the server refused our
        configuration: a durable buffer keeps them for a later process). Returns a note
        for the report, or ""."""

    def kept_note(self) -> str:
        """What a report of messages settled not *final* should add: where they are kept."""

    def __len__(self) -> int: ...


def make_queue(
    options: Options, wake: Callable[[], object], gone: Callable[[int, int], object]
) -> MessageQueue:
    """The buffer *options* ask for. *wake* asks the sender to send now (rows were
    taken over from a dead process); *gone* settles numbers this process will never
    send itself (the file broke, or another process took them over)."""
    path = options.buffer_path
    if path is None:
        return MemoryQueue(options.max_queue_size)
    from .sqlite import SQLiteQueue  # sqlite3 is imported only by those who use it

    return SQLiteQueue(path, options.max_buffer_bytes, options.max_queue_size, wake=wake, gone=gone)


class MemoryQueue:
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
