"""The background sender: when to send, what goes in a request, retries, and settling.

Concurrency in one paragraph. The application's threads only ever ``put`` serialised
bytes into the queue (one short lock) and, now and then, set an Event to wake the
sender. One daemon thread, started lazily at the first message, takes batches and
POSTs them. ``flush()`` and ``close()`` do not ask that thread to work and then wait
for it: they take batches and send them *in the calling thread*, and only wait (with a
deadline) for the batches the sender thread already has in flight. That one choice is
what keeps three hard cases safe:

* ``dictConfig`` closes the old handlers while holding the logging module lock. A flush
  that waited on the sender thread deadlocks as soon as that thread logs (urllib3 does,
  at debug level, and ``isEnabledFor`` takes the module lock after the config cleared
  the level caches). The calling thread owns that RLock, so it can send freely.
  (open-telemetry/opentelemetry-python#3193, PITFALLS row 5.)
* On Python 3.12.0-3.12.2 a thread cannot be started from an atexit hook
  (python/cpython#113964); a process that logs its first event at exit has no sender
  thread, and the exit hook's own drain delivers it.
* A forked child has the parent's queue but not its thread; it gets a fresh queue,
  fresh locks and no thread until it logs (open-telemetry/opentelemetry-python#4005).

Each accepted message has a sequence number (its position in the queue's history);
``_Progress`` tracks which of them are settled (delivered, or failed and reported), so
``flush`` can wait for exactly "everything accepted before the call".
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ._calls import iso_timestamp
from ._errors import (
    CLOSED,
    HTTP_STATUS,
    NETWORK,
    QUEUE_FULL,
    SHUTDOWN_TIMEOUT,
    DeliveryError,
)
from ._options import Options
from ._protocol import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES
from ._queue import FULL as QUEUE_FULL_SIGNAL
from ._queue import Entry, MemoryQueue, Tracked, entry_data
from ._report import Reporter, warn
from ._transport import Outcome, Transport, TransportError, classify

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "MAX_RETRY_AFTER",
    "Sender",
    "close_all",
    "flush_all",
    "in_sender_context",
]

# Backoff before retry n (1-based) is drawn from [d/2, d] with d = BASE * 2**(n-1),
# capped: "equal jitter", so a fleet of workers that failed together does not retry
# together, and no retry comes sooner than half the nominal delay.
BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 30.0
# A Retry-After longer than this is shortened to it: honouring an hour-long answer
# would only fill the queue and drop newer events instead.
MAX_RETRY_AFTER: Final = 60.0

_PREFIX: Final = b'{"batch":['
# Room for '],"sentAt":"2026-11-23T20:35:00.000+00:00"}' with a margin.
_BODY_OVERHEAD: Final = 64
_MAX_BODY_ITEMS_BYTES: Final = MAX_BATCH_BYTES - len(_PREFIX) - _BODY_OVERHEAD

# The threads sending on our behalf right now (the sender threads, and an application
# thread while flush() or close() sends from it). The handler ignores every record logged
# from one of them, so urllib3's or our own records can never re-enter it. A set of
# thread idents rather than a threading.local: this is checked at every logging call,
# and a local's attribute lookup costs several times a set membership test.
_sending: set[int] = set()


def in_sender_context() -> bool:
    return threading.get_ident() in _sending


def _holding_logging_lock() -> bool:
    """Whether this thread holds logging's module lock (it does inside ``dictConfig``).

    While it does, the sender thread may be blocked on that very lock, so waiting for
    its in-flight batch can only time out. RLock._is_owned is not public; without it we
    fall back to waiting, which is bounded anyway.
    """
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    try:
        return bool(is_owned()) if callable(is_owned) else False
    except Exception:  # noqa: BLE001
        return False


class _Progress:
    """Which sequence numbers are settled, so flush can wait for a prefix of them."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._settled_below = 0
        self._ranges: dict[int, int] = {}  # settled [start, end) above the watermark

    def settle(self, start: int, end: int) -> None:
        with self._cond:
            self._ranges[start] = end
            while self._settled_below in self._ranges:
                self._settled_below = self._ranges.pop(self._settled_below)
            self._cond.notify_all()

    def wait(self, target: int, deadline: float) -> bool:
        with self._cond:
            while self._settled_below < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True


@dataclass
class _Batch:
    start: int
    entries: list[Entry]
    attempts: int = 0
    joined: bytes = field(default=b"", repr=False)


def _backoff(attempt: int, retry_after: float | None) -> float:
    nominal = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    delay = random.uniform(nominal / 2, nominal)  # noqa: S311 - jitter, not crypto
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


class Sender:
    """Owns, per process, the queue, the sender thread and the delivery bookkeeping."""

    def __init__(
        self,
        options: Options,
        transport: Transport,
        reporter: Reporter,
        scrub: Callable[[str], str],
    ) -> None:
        self._options = options
        self._batch_size = options.max_events_in_batch
        self._high_water = options.max_queue_size // 2
        self._transport = transport
        self._reporter = reporter
        self._scrub = scrub
        self._reset()
        _SENDERS.add(self)

    def _reset(self) -> None:
        """Fresh per-process state: at construction, and in a forked child.

        Nothing is copied from the parent: its locks may have been held by a thread
        that does not exist here, and its queue is the parent's to send (once).
        """
        self._pid = os.getpid()
        self._queue = MemoryQueue(self._options.max_queue_size)
        self._progress = _Progress()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_failed = False
        self._closed = False
        self._close_deadline = math.inf
        self._close_target = 0
        self._handoff: deque[_Batch] = deque()
        self._urgent = False
        self._last_flush = -math.inf
        self._delivered = 0
        self._not_sent = 0
        self._retried = 0
        self._requests = 0
        self._in_flight = 0
        self._reporter.reset_lock()

    # -- the application's side -------------------------------------------------

    def submit(self, entry: Entry, urgent: bool = False) -> str | None:
        """Queue one serialised message; return None, or the error code if refused.

        Never blocks on anything but the queue's own short lock.
        """
        if self._pid != os.getpid():
            # uWSGI without --py-call-uwsgi-fork-hooks forks without running the
            # os.register_at_fork hooks, so the pid check is the one that always works.
            self._after_fork()
        size = self._queue.put(entry)
        if size <= 0:
            return QUEUE_FULL if size == QUEUE_FULL_SIGNAL else CLOSED
        if self._thread is None and not self._thread_failed:
            self._start()
        if size > self._high_water:
            # Past half full, hand the interpreter lock over once, so a sender thread
            # starved by a tight logging loop gets to run. It returns at once when the
            # sender is waiting on the network (which releases the lock), so the caller
            # never waits for the network; it only stops outrunning the sender. Measured
            # on 100,000 calls in a loop against a slow sink: 13-36% dropped without it,
            # none with it.
            time.sleep(0)
        if size == 1 or size == self._batch_size or urgent:
            # Wake only on the transitions that can change the sender's decision:
            # the first message (start the interval clock, or send at once), a full
            # batch, or a flush trigger. Setting an Event on every call costs a lock.
            if urgent:
                self._urgent = True
            self._wake.set()
        return None

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._thread_failed or self._closed:
                return
            thread = threading.Thread(
                target=self._run, name=f"cdp_logging-sender-{id(self):x}", daemon=True
            )
            try:
                thread.start()
            except RuntimeError as error:
                # 3.12.0-3.12.2 refuse new threads in atexit hooks; elsewhere the
                # process may be out of threads. Messages stay queued and flush()/
                # close() (which run at exit) send them from the calling thread.
                self._thread_failed = True
                if "shutdown" not in str(error):
                    warn(f"cannot start the sender thread ({error}); sending at flush/close")
                return
            # The thread is a daemon so that a DNS lookup hung outside every timeout
            # cannot keep the process alive; exit delivery is close()'s job instead.
            self._thread = thread
        _deliver_at_multiprocessing_exit()

    # -- the sender thread --------------------------------------------------------

    def _run(self) -> None:
        _sending.add(threading.get_ident())
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._deliver(batch, deadline=math.inf)
        except BaseException as error:  # pragma: no cover - a bug; say so, do not vanish
            warn(f"sender thread stopped by {type(error).__name__}: {self._scrub(str(error))}")
            raise
        finally:
            _sending.discard(threading.get_ident())

    def _next_batch(self) -> _Batch | None:
        """Wait until a flush is due, then take one request's worth."""
        options = self._options
        while True:
            try:
                return self._handoff.popleft()
            except IndexError:
                pass
            count = len(self._queue)
            now = time.monotonic()
            stopping = self._stopping.is_set()
            timeout: float | None = None
            if count:
                due = (
                    stopping
                    or self._urgent
                    or count >= options.max_events_in_batch
                    or now - self._last_flush >= options.flush_interval
                )
                if due:
                    self._urgent = False
                    self._last_flush = now
                    batch = self._take()
                    if batch is not None:
                        return batch
                    continue  # a flush() in another thread took them first
                timeout = self._last_flush + options.flush_interval - now
            elif stopping:
                return None
            self._wake.wait(timeout)
            self._wake.clear()

    def _take(self, before: int | None = None) -> _Batch | None:
        start, entries = self._queue.take(MAX_BATCH_MESSAGES, _MAX_BODY_ITEMS_BYTES, before)
        if not entries:
            return None
        with self._lock:
            self._in_flight += len(entries)
        return _Batch(start, entries)

    # -- one batch, start to end --------------------------------------------------

    def _deliver(self, batch: _Batch, deadline: float) -> None:
        """Send *batch* until it is settled, or hand it on when *deadline* comes first."""
        if not self._options.send:
            self._settle_delivered(batch, sent=False)
            return
        if not batch.joined:
            batch.joined = b",".join(
                [e if type(e) is bytes else e.data for e in batch.entries]  # type: ignore[union-attr]
            )
        while True:
            body = b"".join(
                (
                    _PREFIX,
                    batch.joined,
                    b'],"sentAt":"',
                    iso_timestamp(time.time()).encode("ascii"),
                    b'"}',
                )
            )
            status: int | None = None
            retry_after: float | None = None
            with self._lock:
                self._requests += 1
            try:
                response = self._transport.send(body)
            except TransportError as error:
                outcome = Outcome.RETRY
                reason = f"could not reach {self._options.host}: {error}"
            except Exception as error:  # noqa: BLE001 - a custom transport's bug is a network error to us
                outcome = Outcome.RETRY
                reason = f"transport raised {type(error).__name__}: {error}"
            else:
                status = response.status
                retry_after = response.retry_after
                outcome = classify(status)
                reason = self._http_reason(status, response.text)
            if outcome is Outcome.DELIVERED:
                self._settle_delivered(batch, sent=True)
                return
            if outcome is Outcome.GIVE_UP:
                self._settle_failed(batch, HTTP_STATUS, reason, status)
                return
            if batch.attempts >= self._options.max_retries:
                code = HTTP_STATUS if status is not None else NETWORK
                tries = batch.attempts + 1
                self._settle_failed(
                    batch, code, f"gave up after {tries} attempts: {reason}", status
                )
                return
            batch.attempts += 1
            if not self._wait_to_retry(
                batch, _backoff(batch.attempts, retry_after), deadline, reason, status
            ):
                return
            with self._lock:
                self._retried += 1

    def _wait_to_retry(
        self, batch: _Batch, delay: float, deadline: float, reason: str, status: int | None
    ) -> bool:
        """Sleep *delay* before the next attempt; False if the batch left our hands."""
        wake_at = time.monotonic() + delay
        while True:
            limit = min(deadline, self._close_deadline)
            if wake_at > limit:
                if self._closed:
                    self._settle_failed(
                        batch,
                        SHUTDOWN_TIMEOUT,
                        f"not delivered within shutdown_timeout="
                        f"{self._options.shutdown_timeout:g}s; last attempt: {reason}",
                        status,
                    )
                else:
                    # A flush() in the caller ran out of time: the sender thread
                    # carries on with this batch, retries and all.
                    self._handoff.append(batch)
                    self._start()
                    self._wake.set()
                return False
            remaining = wake_at - time.monotonic()
            if remaining <= 0:
                return True
            if self._stopping.is_set():
                time.sleep(remaining)  # bounded: wake_at <= the close deadline
                return True
            # close() sets _stopping: wake up and measure the wait against its deadline.
            self._stopping.wait(remaining)

    def _http_reason(self, status: int, text: str) -> str:
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
        return f"{self._options.endpoint} answered {status}: {hint}" + (
            f" ({detail})" if detail else ""
        )

    # -- settling -----------------------------------------------------------------

    def _decode(self, batch: _Batch) -> list[dict[str, Any]]:
        return [json.loads(entry_data(entry)) for entry in batch.entries]

    def _settle_delivered(self, batch: _Batch, *, sent: bool) -> None:
        count = len(batch.entries)
        with self._lock:
            self._in_flight -= count
            if sent:
                self._delivered += count
            else:
                self._not_sent += count
        tracked = [entry for entry in batch.entries if type(entry) is Tracked]
        on_flush = self._options.on_flush
        if on_flush is not None or tracked:
            messages = self._decode(batch)
            if on_flush is not None:
                try:
                    on_flush(messages)
                except Exception as error:  # noqa: BLE001
                    warn(f"on_flush raised {type(error).__name__}: {self._scrub(str(error))}")
            if tracked:
                by_entry = {
                    id(entry): message
                    for entry, message in zip(batch.entries, messages, strict=True)
                }
                for item in tracked:
                    _resolve(item, None, by_entry[id(item)], self._scrub)
        self._progress.settle(batch.start, batch.start + count)

    def _settle_failed(self, batch: _Batch, code: str, reason: str, status: int | None) -> None:
        count = len(batch.entries)
        with self._lock:
            self._in_flight -= count
        tracked = [entry for entry in batch.entries if type(entry) is Tracked]
        messages = self._decode(batch) if tracked or self._reporter.wants_errors else []
        error = DeliveryError(code, self._scrub(reason), status=status, messages=messages)
        self._reporter.report(error, count)
        if tracked:
            by_entry = {
                id(entry): message for entry, message in zip(batch.entries, messages, strict=True)
            }
            for item in tracked:
                _resolve(item, error, by_entry[id(item)], self._scrub)
        self._progress.settle(batch.start, batch.start + count)

    # -- flush and close, in the calling thread -----------------------------------

    def _drain(self, before: int | None, deadline: float) -> None:
        me = threading.get_ident()
        was_sending = me in _sending
        _sending.add(me)
        try:
            while time.monotonic() < deadline:
                try:
                    batch = self._handoff.popleft()
                except IndexError:
                    taken = self._take(before)
                    if taken is None:
                        return
                    batch = taken
                self._deliver(batch, deadline)
        finally:
            if not was_sending:
                _sending.discard(me)

    def _wait_for_in_flight(self, target: int, deadline: float) -> bool:
        if _holding_logging_lock():
            # Inside dictConfig: the sender thread's in-flight batch may be waiting
            # for the lock we hold. It finishes once we return; waiting only stalls.
            deadline = time.monotonic()
        return self._progress.wait(target, deadline)

    def flush(self, timeout: float) -> bool:
        """Send everything accepted before this call; True when all of it is settled."""
        if self._pid != os.getpid():
            self._after_fork()
        deadline = time.monotonic() + timeout
        target = self._queue.accepted
        self._drain(target, deadline)
        return self._wait_for_in_flight(target, deadline)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float) -> None:
        """Stop accepting, deliver what is queued within *timeout*, report the rest."""
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_deadline = time.monotonic() + timeout
        self._queue.close()
        self._close_target = self._queue.accepted
        self._stopping.set()
        self._wake.set()
        self._drain(None, self._close_deadline)
        self._wait_for_in_flight(self._close_target, self._close_deadline)
        self._abandon_leftovers()
        self._reporter.summarise()

    def _abandon_leftovers(self) -> None:
        """Report, as shutdown_timeout, what close() had no time left to send."""
        reason = (
            f"still queued when shutdown_timeout={self._options.shutdown_timeout:g}s ran out; "
            "raise shutdown_timeout or check that the host is reachable"
        )
        while True:
            try:
                batch = self._handoff.popleft()
            except IndexError:
                taken = self._take()
                if taken is None:
                    return
                batch = taken
            self._settle_failed(batch, SHUTDOWN_TIMEOUT, reason, None)

    def at_exit(self) -> None:
        """Deliver what is left, bounded by shutdown_timeout: run by the exit hook."""
        if not self._closed:
            self.close(self._options.shutdown_timeout)
        else:
            # Closed earlier (say by dictConfig, under the logging lock) with a batch
            # still in the sender thread's hands: give it until the close deadline.
            self._progress.wait(self._close_target, self._close_deadline)

    def _after_fork(self) -> None:
        self._reset()

    # -- numbers ------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "queued": self._queue.accepted,
                "pending": len(self._queue) + self._in_flight,
                "in_flight": self._in_flight,
                "delivered": self._delivered,
                "not_sent": self._not_sent,
                "retried": self._retried,
                "requests": self._requests,
            }


def _resolve(
    item: Tracked,
    error: DeliveryError | None,
    message: dict[str, Any],
    scrub: Callable[[str], str],
) -> None:
    future = item.future
    if future is not None and not future.done():
        if error is None:
            future.set_result(message)
        else:
            future.set_exception(error)
    if item.callback is not None:
        try:
            item.callback(error, message)
        except Exception as problem:  # noqa: BLE001
            warn(f"callback raised {type(problem).__name__}: {scrub(str(problem))}")


# Every sender in this process, for the fork hook and the exit hook. Weak: a client
# the application dropped is not kept alive by being registered (its running thread
# keeps its sender alive until it is idle, which is what exit needs).
_SENDERS: weakref.WeakSet[Sender] = weakref.WeakSet()


def _reset_all_after_fork() -> None:
    # The parent's sending threads do not exist here, and their idents can be reused by
    # the child's threads, whose records would then be ignored.
    _sending.clear()
    for sender in list(_SENDERS):
        sender._after_fork()


def flush_all(timeout: float) -> bool:
    """Flush every sender in this process within one shared *timeout*; True if all settled."""
    deadline = time.monotonic() + timeout
    settled = True
    for sender in list(_SENDERS):
        if not sender.closed:
            settled = sender.flush(max(0.0, deadline - time.monotonic())) and settled
    return settled


def close_all() -> None:
    """Deliver, within each one's shutdown_timeout, what every sender still holds."""
    for sender in list(_SENDERS):
        try:
            sender.at_exit()
        except Exception as error:  # noqa: BLE001 - one broken sender must not stop the rest
            warn(f"exit delivery failed: {type(error).__name__}")


_finalizer_pid: int | None = None


def _deliver_at_multiprocessing_exit() -> None:
    """Have a multiprocessing child deliver before it ends with ``os._exit``.

    multiprocessing ends its children with os._exit, which skips atexit, after running
    its own finalizers (util._exit_function). It clears inherited finalizers when the
    child starts, so registering here, when the child first sends, is what survives.
    """
    global _finalizer_pid
    util = sys.modules.get("multiprocessing.util")
    process = sys.modules.get("multiprocessing.process")
    if util is None or process is None or _finalizer_pid == os.getpid():
        return
    if process.parent_process() is None:
        return  # the main process: the atexit hook covers it
    _finalizer_pid = os.getpid()
    util.Finalize(None, close_all, exitpriority=10)


os.register_at_fork(after_in_child=_reset_all_after_fork)
