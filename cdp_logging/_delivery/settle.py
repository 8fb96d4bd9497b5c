"""Settling: how each batch ended, told to everyone who asked, and counted.

A batch is settled exactly once: delivered (or not sent, with ``send=False``), or failed
and reported. Settling tells ``on_flush`` or the ``Reporter`` (and through it
``on_error``, ``stats()`` and stderr), resolves the Future and callback of each call that
asked, and marks the batch's sequence numbers done, so that ``flush`` (which waits for
"everything accepted before me") can return. Batches settle in any order: a half of a
split batch, or a batch a flush sent from another thread, may end before an older one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from .._buffers.base import Buffer, Tracked, entry_data
from .._core.clock import Clock
from .._core.errors import INTERNAL_ERROR, KEPT, NETWORK, SHUTDOWN_TIMEOUT, DeliveryError
from .._core.options import FlushCallback
from .._core.report import Reporter, warn
from .._core.serialise import decode
from .._transports.base import CONFIGURATION_STATUSES, Outcome, classify
from .batch import Batch
from .future import CallFuture

__all__ = ["Ledger", "Progress", "resolve_call"]

Callback = Callable[[Exception | None, dict[str, Any]], object]


class Progress:
    """Which sequence numbers are settled, so flush can wait for a prefix of them."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._settled_below = 0
        self._ranges: dict[int, int] = {}  # settled [start, end) above the watermark

    def settle(self, start: int, end: int) -> None:
        with self._cond:
            self._ranges[start] = end
            while self._settled_below in self._ranges:
                self._settled_below = self._ranges.pop(self._settled_below)
            self._cond.notify_all()

    @property
    def settled(self) -> int:
        """The lowest sequence number not yet settled (everything below it is)."""
        return self._settled_below

    def wait(self, target: int, deadline: float) -> bool:
        """Whether every sequence number below *target* is settled by *deadline*."""
        with self._cond:
            while self._settled_below < target:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    return False
                self._clock.wait(self._cond, remaining)
            return True


def resolve_call(
    future: Future[dict[str, Any]] | None,
    callback: Callback | None,
    error: DeliveryError | None,
    message: dict[str, Any],
    scrub: Callable[[str], str],
) -> None:
    """Tell one call how it ended: its Future, then its callback (which must not raise)."""
    if future is not None and not future.done():
        # The application may cancel() between done() and here: nothing to tell it then.
        with contextlib.suppress(InvalidStateError):
            if error is None:
                future.set_result(message)
            else:
                future.set_exception(error)
    if callback is not None:
        try:
            callback(error, message)
        except Exception as problem:  # noqa: BLE001
            warn(f"callback raised {type(problem).__name__}: {scrub(str(problem))}")


def _decode(batch: Batch) -> list[dict[str, Any]]:
    return [decode(entry_data(entry)) for entry in batch.entries]


class Ledger:
    """The counters of one sender, and the one place where batches are settled."""

    def __init__(
        self,
        on_flush: FlushCallback | None,
        reporter: Reporter,
        scrub: Callable[[str], str],
        queue: Buffer,
        progress: Progress,
    ) -> None:
        self._on_flush = on_flush
        self._reporter = reporter
        self._scrub = scrub
        # Told of every settled range, so a durable buffer deletes a row only then.
        self._queue = queue
        self.progress = progress
        self._lock = threading.Lock()
        self._delivered = 0
        self._not_sent = 0
        self._retried = 0
        self._requests = 0
        self._in_flight = 0

    # -- counting -------------------------------------------------------------------

    def taken(self, count: int) -> None:
        with self._lock:
            self._in_flight += count

    def requested(self) -> None:
        with self._lock:
            self._requests += 1

    def retrying(self) -> None:
        with self._lock:
            self._retried += 1

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def numbers(self) -> dict[str, int]:
        with self._lock:
            return {
                "in_flight": self._in_flight,
                "delivered": self._delivered,
                "not_sent": self._not_sent,
                "retried": self._retried,
                "requests": self._requests,
            }

    # -- settling -------------------------------------------------------------------

    def delivered(self, batch: Batch, *, sent: bool) -> None:
        batch.settled = True
        count = len(batch.entries)
        with self._lock:
            self._in_flight -= count
            if sent:
                self._delivered += count
            else:
                self._not_sent += count
        tracked = batch.tracked()
        on_flush = self._on_flush
        if on_flush is not None:
            messages = _decode(batch)
            try:
                on_flush(messages)
            except Exception as error:  # noqa: BLE001
                warn(f"on_flush raised {type(error).__name__}: {self._scrub(str(error))}")
            if tracked:
                self._resolve(batch, tracked, None, messages)
        elif tracked:
            self._resolve(batch, tracked, None, None)
        self._queue.settle(batch.start, batch.end, True)
        self.progress.settle(batch.start, batch.end)

    def failed(self, batch: Batch, code: str, reason: str, status: int | None) -> None:
        batch.settled = True
        count = len(batch.entries)
        with self._lock:
            self._in_flight -= count
        # A durable buffer deletes the rows of a batch the server refused for good. It
        # keeps them for a later process when only close()'s deadline stopped us, when
        # the server refused our configuration (a wrong key or host), not the messages,
        # or when retries ran out on a failure worth retrying (the host down, 5xx, 429):
        # an outage of any length then costs no message the buffer holds, as with the
        # fleet's relay, which leaves such a message in its stream.
        final = not (
            code in (SHUTDOWN_TIMEOUT, NETWORK)
            or status in CONFIGURATION_STATUSES
            or (status is not None and classify(status) is Outcome.RETRY)
        )
        if not final:
            reason += self._queue.kept_note()
        tracked = batch.tracked()
        messages = _decode(batch) if tracked or self._reporter.wants_errors else []
        # *reason* is ours, with what others wrote (an answer, an exception) scrubbed
        # where it was put in: scrubbing the whole sentence would hide our own words
        # when the key is one of them (a test key "write", in "the write key").
        error = DeliveryError(code, reason, status=status, messages=messages)
        self._reporter.report(error, count)
        if tracked:
            self._resolve(batch, tracked, error, messages)
        # Only now, once the failure is reported: a row is never gone unreported.
        self._queue.settle(batch.start, batch.end, final)
        self.progress.settle(batch.start, batch.end)

    def gone(self, start: int, end: int, waiters: list[Tracked], reason: str) -> None:
        """The buffer will never send [start, end) from this process (another process
        took it over, or the file broke and keeps it): end the calls waiting on it as
        ``kept``, so a ``result()`` with no timeout does not wait for this process
        forever, and let ``flush`` stop waiting for those numbers."""
        if waiters:
            error = DeliveryError(KEPT, self._scrub(reason))
            for item in waiters:
                resolve_call(item.future, item.callback, error, decode(item.data), self._scrub)
        self.progress.settle(start, end)

    def failed_internally(self, batch: Batch, error: BaseException) -> None:
        """Our own bug stopped a batch: settle it, so no flush waits for it forever."""
        if not batch.settled:
            reason = f"delivery stopped by {type(error).__name__}: {self._scrub(str(error))}"
            self.failed(batch, INTERNAL_ERROR, reason, None)

    def _resolve(
        self,
        batch: Batch,
        tracked: list[Tracked],
        error: DeliveryError | None,
        messages: list[dict[str, Any]] | None,
    ) -> None:
        """Tell each tracked call of *batch* how it ended.

        *messages* is the batch decoded, when someone already needed it (``on_flush``,
        an error); without it a message is decoded only for a call that will read it.
        A delivered direct call's ``CallFuture`` that nothing has looked at keeps its
        wire bytes (``deliver``): in fire-and-forget use, the common one, the sender
        decodes nothing.
        """
        by_entry = None
        if messages is not None:
            by_entry = {
                id(entry): message for entry, message in zip(batch.entries, messages, strict=True)
            }
        for item in tracked:
            future, callback = item.future, item.callback
            if by_entry is not None:
                message = by_entry[id(item)]
            elif error is None and callback is None and type(future) is CallFuture:
                future.deliver(item.data)
                continue
            else:
                message = decode(item.data)
            resolve_call(future, callback, error, message, self._scrub)
