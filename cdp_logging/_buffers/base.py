"""The buffer between the logging call and the sender, behind a small interface.

The sender only needs three things from a buffer: add one serialised message without
ever blocking, take a batch bounded by count and bytes, and know how many messages
were ever accepted (so ``flush`` can wait for "everything enqueued before me"), plus
two hooks for the durable buffer (``sqlite.SQLiteQueue``): ``start``, called once the
sender can be woken (the buffer may find a backlog before anything is logged), and
``settle``, called where the sender settles a range, so a row leaves the file only
once its batch is settled.

Entries are the message's JSON bytes, or a ``Tracked`` wrapper when the caller wants
to hear about that one message (a Future or a callback). Logging calls never ask, so the
common entry is a bare ``bytes`` object: the cheapest thing Python can hold.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from enum import IntEnum
from typing import Any, Final, Protocol, TypeAlias

from .._transports.base import Response

__all__ = [
    "CLOSED",
    "FULL",
    "Buffer",
    "Entry",
    "Gone",
    "Local",
    "Post",
    "Refusal",
    "Tracked",
    "entry_data",
    "join_entries",
]


class Refusal(IntEnum):
    """Why ``put`` added nothing. Ints below 1, so the caller's one test of a put's
    result (``size <= 0``) stays a comparison of two ints on the hot path."""

    FULL = 0
    CLOSED = -1


FULL: Final = Refusal.FULL
CLOSED: Final = Refusal.CLOSED


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
# The direct delivery a forwarding buffer falls back on: messages, timeout -> the answer.
Post: TypeAlias = Callable[[list[bytes], float], Response]

# What a durable buffer hands back to the delivery layer, which settles it (code kept):
# numbers [start, end) this process will never send itself, the calls waiting on some
# of them, and why. A buffer resolves no Future and runs no callback itself.
Gone: TypeAlias = Callable[[int, int, "list[Tracked]", str], object]


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


class Buffer(Protocol):
    """What the sender needs from a buffer."""

    @property
    def accepted(self) -> int:
        """How many entries were ever accepted; the next one gets this sequence number."""

    def put(self, entry: Entry) -> int:
        """Add *entry*; return the new length, or a ``Refusal`` (nothing added then)."""

    def start(self) -> None:
        """The sender is ready to be woken (and told of numbers settled elsewhere)."""

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

    def release(self) -> None:
        """Give back what the buffer holds beyond memory (a connection, a file handle):
        called once its sender has finished closing, delivered or not."""

    @property
    def forwards(self) -> bool:
        """Whether batches taken from here go on through ``forward``, not the transport."""

    def forward(self, messages: list[bytes], timeout: float, post: Post) -> Response:
        """Move *messages*, taken from this buffer, to where it keeps them beyond this
        process (a Redis stream); *post* delivers them directly when that cannot be
        reached.

        Raises:
            BufferFull: that store is at its bound; the batch is dropped (queue_full).
        """


class Local:
    """For buffers that keep nothing outside this process: what they give, is POSTed."""

    forwards = False

    def release(self) -> None:
        pass

    def forward(self, messages: list[bytes], timeout: float, post: Post) -> Response:
        return post(messages, timeout)
