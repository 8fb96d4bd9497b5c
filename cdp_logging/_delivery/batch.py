"""What goes in one request: a batch of queued messages, its body, and its halves.

The queue holds each message already serialised, so a request body is a join of bytes
with the batch's framing around it; nothing is parsed or encoded again here. When the
server refuses a body as too large (413), or refuses a whole batch for what is likely
one bad message (400), the batch is cut into contiguous halves: each half keeps its
place in the sequence (so ``flush`` still waits for exactly what it should) and its
messages keep their messageIds, so a message that does reach the server twice is
deduplicated there.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Final

from .._buffers.base import Entry, Tracked, join_entries
from .._core.calls import iso_timestamp
from .._core.protocol import MAX_BATCH_BYTES

__all__ = [
    "MAX_BODY_ITEMS_BYTES",
    "Batch",
    "Narrowing",
    "body",
    "http_reason",
    "narrowing_budget",
]

_PREFIX: Final = b'{"batch":['
# Room for '],"sentAt":"2026-11-23T20:35:00.000+00:00"}' with a margin.
_BODY_OVERHEAD: Final = 64
MAX_BODY_ITEMS_BYTES: Final = MAX_BATCH_BYTES - len(_PREFIX) - _BODY_OVERHEAD


def narrowing_budget(count: int) -> int:
    """Extra requests a 400 for a batch of *count* messages may cost to find the bad ones.

    Bisection finds one bad message in 2·⌈log2 n⌉ requests (both halves at each level);
    twice that finds two, which covers the usual case (one bad value in a busy batch)
    with room to spare. A batch where every message is bad would need 2n - 2 requests
    to prove it; the budget stops that at a few dozen (n = 2,500: 48).
    """
    return 4 * max(1, math.ceil(math.log2(count))) if count > 1 else 0


@dataclass
class Narrowing:
    """The extra requests left to the halves of one batch that got a 400, shared by all."""

    left: int


@dataclass(eq=False)  # identity: the sender finds a batch in its handoff by it
class Batch:
    """Messages taken from the queue together, and where their delivery stands."""

    start: int  # the sequence number of the first entry
    entries: list[Entry]
    attempts: int = 0
    joined: bytes = field(default=b"", repr=False)
    has_tracked: bool | None = None  # any Tracked entry; None until joined
    not_before: float = 0.0  # monotonic time of the next attempt (backoff, Retry-After)
    last_reason: str = ""
    last_status: int | None = None
    settled: bool = False
    narrowing: Narrowing | None = None  # set on the halves of a batch refused with 400

    @property
    def end(self) -> int:
        return self.start + len(self.entries)

    def join(self) -> bytes:
        if not self.joined:
            self.joined, self.has_tracked = join_entries(self.entries)
        return self.joined

    def tracked(self) -> list[Tracked]:
        """The entries someone waits on; a joined batch already knows whether there are any."""
        if self.has_tracked is None:
            # Not joined (send=False settles unsent): the join is one C call that tells,
            # where the loop below costs ~1,000 instructions per entry's share.
            self.join()
        if self.has_tracked is False:
            return []  # the usual batch: no Python loop over thousands of entries
        return [entry for entry in self.entries if type(entry) is Tracked]

    def halves(self) -> tuple[Batch, Batch]:
        """Two contiguous batches, first half first, that start their retries afresh."""
        middle = len(self.entries) // 2
        return (
            Batch(self.start, self.entries[:middle], narrowing=self.narrowing),
            Batch(self.start + middle, self.entries[middle:], narrowing=self.narrowing),
        )


def body(joined: bytes) -> bytes:
    """The request body: the batch, and ``sentAt`` as of now (the server's clock-skew fix)."""
    sent_at = iso_timestamp(time.time()).encode("ascii")
    return b"".join((_PREFIX, joined, b'],"sentAt":"', sent_at, b'"}'))


def http_reason(endpoint: str, status: int, text: str) -> str:
    """A sentence a person can act on, for an answer that was not a success."""
    detail = text.strip().replace("\n", " ")
    if status in (401, 403):
        hint = "the write key was refused: check write_key / CDP_WRITE_KEY and host"
    elif status == 413:
        hint = "the server found the request too large"
    elif status == 429:
        hint = "rate limited by the server"
    elif status >= 500:
        hint = "the server failed"
    else:
        hint = "the server refused the batch"
    return f"{endpoint} answered {status}: {hint}" + (f" ({detail})" if detail else "")
