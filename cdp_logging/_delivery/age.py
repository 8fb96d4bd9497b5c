"""How long the oldest undelivered message has waited, known without timing each call.

The gauge ``cdp_queue_oldest_age_seconds`` (``cdp_logging.metrics``) needs when the
oldest message not yet settled (queued, or in a request being sent or retried) was
queued. Reading the clock at every logging call would put a system call on the hot
path for a number read once per scrape, so the sender thread keeps *marks* instead,
off that path: a mark ``(number, time)`` says "every message numbered ``number`` or
above was queued at ``time`` or later". The sender makes one

* at each batch it takes (the clock is read first, then how many were accepted), and
* when it wakes up, idle no more, for the messages queued since it found the queue
  empty: the first of them woke it, so they were queued at most one wake-up latency
  (microseconds; at worst a GIL switch interval) before the mark's time.

The oldest unsettled message is the sender's settled watermark; its age is measured
from the latest mark at or below its number. So the figure is an upper bound, exact
for a message that arrived while the sender was idle (the common case: a queue that
empties at every batch), and otherwise too large by at most the time between two
batches taken (``flush_interval`` or less). It never says a stuck queue is fresh: with
delivery stuck, no new marks are made and the age grows with the wait. Rows a durable
buffer takes over from a dead process count from when they were taken over.
"""

from __future__ import annotations

import threading
from typing import Final

from .._core.clock import Clock

__all__ = ["Ages"]

# Marks are few (one per batch not yet settled, plus one): the bound is only a guard
# against a flood of takes while nothing settles. A mark left out keeps the figure an
# upper bound (an older mark answers instead), never too small.
MAX_MARKS: Final = 1024


class Ages:
    """The marks of one sender, per process (a forked child's sender makes new ones)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._marks: list[tuple[int, float]] = []

    def mark(self, first: int, at: float, settled_below: int) -> None:
        """Messages numbered *first* and above were queued at *at* or later.

        Marks that can no longer answer for any unsettled message go: a mark whose
        successor is at or below *settled_below* (the oldest unsettled number) is
        outdone by it, which was made later. Once per batch, on the sender's thread.
        """
        with self._lock:
            marks = self._marks
            while len(marks) > 1 and marks[1][0] <= settled_below:
                del marks[0]
            if len(marks) < MAX_MARKS:
                marks.append((first, at))

    def age(self, oldest: int) -> float:
        """Seconds since message *oldest* was queued, at most (0.0 if no mark knows it)."""
        with self._lock:
            times = [at for first, at in self._marks if first <= oldest]
        if not times:
            return 0.0
        return max(0.0, self._clock.monotonic() - max(times))
