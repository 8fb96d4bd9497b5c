"""The background sender: when to send, what goes in a request, retries, and settling.

Concurrency in one paragraph. The application's threads only ever ``put`` serialised
bytes into the queue (one short lock) and, now and then, set an Event to wake the
sender. One daemon thread, started lazily at the first message, takes batches and
POSTs them. ``flush()`` and ``close()`` ask that thread to send everything now and wait
for it, with a deadline; every request is bounded by the time left, so neither can
overrun it (a hung DNS lookup stays on the daemon thread, never on the caller's). The
calling thread sends only where the sender thread cannot:

* ``dictConfig`` closes the old handlers while holding the logging module lock. A flush
  that waited on the sender thread deadlocks as soon as that thread logs (urllib3 does,
  at debug level, and ``isEnabledFor`` takes the module lock after the config cleared
  the level caches). The calling thread owns that RLock, so it sends itself: one
  attempt per batch, handing failures back to the sender thread with their backoff
  (open-telemetry/opentelemetry-python#3193, PITFALLS row 5).
* On Python 3.12.0-3.12.2 a thread cannot be started from an atexit hook
  (python/cpython#113964); a process that logs its first event at exit has no sender
  thread, and the exit hook delivers it from its own thread, retries and all.
* A forked child has the parent's queue but not its thread; it gets a fresh queue,
  fresh locks and no thread until it logs (open-telemetry/opentelemetry-python#4005).

Each accepted message has a sequence number (its position in the queue's history);
``_Progress`` tracks which of them are settled (delivered, or failed and reported), so
``flush`` can wait for exactly "everything accepted before the call".
"""

from __future__ import annotations

import contextlib
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
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Final

from ._calls import iso_timestamp, reseed_message_ids
from ._errors import (
    CLOSED,
    HTTP_STATUS,
    INTERNAL_ERROR,
    NETWORK,
    QUEUE_FULL,
    SHUTDOWN_TIMEOUT,
    DeliveryError,
)
from ._options import Options
from ._protocol import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES
from ._queue import FULL as QUEUE_FULL_SIGNAL
from ._queue import Entry, Tracked, entry_data, join_entries, make_queue
from ._report import Reporter, warn
from ._transport import Outcome, Transport, TransportError, classify

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "MAX_RETRY_AFTER",
    "Sender",
    "close_all",
    "exit_hook_ran",
    "flush_all",
    "process_lock",
    "resolve_call",
    "sending_threads",
]

# Backoff before retry n (1-based) is drawn from [d/2, d] with d = BASE * 2**(n-1),
# capped: "equal jitter", so a fleet of workers that failed together does not retry
# together, and no retry comes sooner than half the nominal delay.
BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 30.0
# A Retry-After longer than this is shortened to it: honouring an hour-long answer
# would only fill the queue and drop newer events instead.
MAX_RETRY_AFTER: Final = 60.0

# A request is not started with less time than this left before its deadline: it could
# not finish, and would only hold the caller (or exit) past the deadline.
MIN_REQUEST_SECONDS: Final = 0.05
# After "can't start new thread", how long calls leave the thread alone before trying
# again (each try costs the calling thread; a process out of threads may get some back).
THREAD_RETRY_SECONDS: Final = 1.0

_PREFIX: Final = b'{"batch":['
# Room for '],"sentAt":"2026-11-23T20:35:00.000+00:00"}' with a margin.
_BODY_OVERHEAD: Final = 64
_MAX_BODY_ITEMS_BYTES: Final = MAX_BATCH_BYTES - len(_PREFIX) - _BODY_OVERHEAD

# The threads sending on our behalf right now (the sender threads, and an application
# thread while flush() or close() sends from it). The handler ignores every record logged
# from one of them, so urllib3's or our own records can never re-enter it. A set of
# thread idents rather than a threading.local: this is checked at every logging call,
# and a local's attribute lookup costs several times a set membership test.
sending_threads: set[int] = set()


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
    has_tracked: bool | None = None  # any Tracked entry; None until joined
    not_before: float = 0.0  # monotonic time of the next attempt (backoff, Retry-After)
    last_reason: str = ""
    last_status: int | None = None
    settled: bool = False


def _tracked(batch: _Batch) -> list[Tracked]:
    """The entries someone waits on; a joined batch already knows whether there are any."""
    if batch.has_tracked is False:
        return []  # the usual batch: no Python loop over thousands of entries
    return [entry for entry in batch.entries if type(entry) is Tracked]


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

    def _reset(self, *, closed: bool = False) -> None:
        """Fresh per-process state: at construction, and in a forked child.

        Nothing is copied from the parent: its locks may have been held by a thread
        that does not exist here, and its queue is the parent's to send (once). A
        client the parent closed stays closed. ``_pid`` is set last: threads of a
        child that forked without hooks wait in ``_after_fork`` until all is fresh.
        """
        self._progress = _Progress()
        self._wake = threading.Event()
        self._queue = make_queue(self._options, self._wake_now, self._progress.settle)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # After a failed thread start, when to try again (monotonic); until then
        # flush()/close() send from the calling thread.
        self._retry_thread_at = 0.0
        self._warned_no_thread = False
        self._closed = closed
        self._close_deadline = math.inf
        self._close_target = 0
        self._handoff: deque[_Batch] = deque()
        self._urgent = False
        self._flush_upto = 0  # flush() wants every sequence number below this sent now
        self._last_flush = -math.inf
        self._delivered = 0
        self._not_sent = 0
        self._retried = 0
        self._requests = 0
        self._in_flight = 0
        self._reporter.reset_after_fork()
        if closed:
            self._queue.close()
            self._stopping.set()
        self._pid = os.getpid()

    # -- the application's side -------------------------------------------------

    def ensure_process(self) -> None:
        """Reset if this is a forked child that no fork hook has reset yet.

        uWSGI without --py-call-uwsgi-fork-hooks forks without running the
        os.register_at_fork hooks, so this pid check, made by every call before it
        builds its message (whose messageId must come from this process), is the one
        that always works.
        """
        if self._pid != os.getpid():
            self._after_fork()

    def submit(self, entry: Entry, urgent: bool = False) -> str | None:
        """Queue one serialised message; return None, or the error code if refused.

        Never blocks on anything but the queue's own short lock. The caller has called
        ``ensure_process`` first.
        """
        size = self._queue.put(entry)
        if size <= 0:
            return QUEUE_FULL if size == QUEUE_FULL_SIGNAL else CLOSED
        if self._thread is None and time.monotonic() >= self._retry_thread_at:
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

    def _wake_now(self) -> None:
        """A durable buffer took over rows a dead process left: send them now."""
        self._urgent = True
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed or time.monotonic() < self._retry_thread_at:
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
                # A later call tries again; at interpreter shutdown that fails the
                # same way, silently.
                self._retry_thread_at = time.monotonic() + THREAD_RETRY_SECONDS
                if not self._warned_no_thread and "shutdown" not in str(error):
                    self._warned_no_thread = True
                    warn(f"cannot start the sender thread ({error}); sending at flush/close")
                return
            # The thread is a daemon so that a DNS lookup hung outside every timeout
            # cannot keep the process alive; exit delivery waits for it, bounded.
            self._thread = thread
        _deliver_at_multiprocessing_exit()

    def _thread_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- the sender thread --------------------------------------------------------

    def _run(self) -> None:
        sending_threads.add(threading.get_ident())
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self._deliver(batch, math.inf, hand_off=False)
                except Exception as error:  # noqa: BLE001 - settle it, keep the thread
                    self._settle_internal_error(batch, error)
                except BaseException as error:
                    self._settle_internal_error(batch, error)
                    raise
        finally:
            sending_threads.discard(threading.get_ident())
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None  # a later call starts a new one, unless closed

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
                    or self._queue.accepted - count < self._flush_upto
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

    def _deliver(self, batch: _Batch, deadline: float, *, hand_off: bool) -> None:
        """Send *batch* until it is settled, or until *deadline* (or close's) passes.

        With *hand_off*, make one attempt and give a retryable failure to the sender
        thread, with its backoff: the caller (inside dictConfig) must not sleep, and
        retrying at once would hammer a server that asked us to wait.
        """
        if not self._options.send:
            self._settle_delivered(batch, sent=False)
            return
        if not batch.joined:
            batch.joined, batch.has_tracked = join_entries(batch.entries)
        while True:
            if not self._wait_until_due(batch, deadline):
                return
            remaining = min(deadline, self._close_deadline) - time.monotonic()
            if remaining < MIN_REQUEST_SECONDS:
                self._out_of_time(batch)
                return
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
                response = self._transport.send(body, min(self._options.timeout, remaining))
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
            batch.not_before = time.monotonic() + _backoff(batch.attempts, retry_after)
            batch.last_reason, batch.last_status = reason, status
            with self._lock:
                self._retried += 1
            if hand_off:
                self._handoff.append(batch)
                self._wake.set()
                return

    def _wait_until_due(self, batch: _Batch, deadline: float) -> bool:
        """Sleep until the batch's next attempt is due; False if it left our hands."""
        while True:
            wait = batch.not_before - time.monotonic()
            if wait <= 0:
                return True
            if batch.not_before > min(deadline, self._close_deadline) - MIN_REQUEST_SECONDS:
                self._out_of_time(batch)
                return False
            if self._stopping.is_set():
                time.sleep(wait)  # bounded: not_before is before the close deadline
                return True
            # close() sets _stopping: wake up and measure the wait against its deadline.
            self._stopping.wait(wait)

    def _out_of_time(self, batch: _Batch) -> None:
        """The deadline comes before the batch can be (re)tried: report it, or pass it on."""
        if self._closed:
            last = f"; last attempt: {batch.last_reason}" if batch.last_reason else ""
            self._settle_failed(
                batch,
                SHUTDOWN_TIMEOUT,
                f"not delivered within shutdown_timeout={self._options.shutdown_timeout:g}s{last}",
                batch.last_status,
            )
        else:
            # A flush() ran out of time: the sender thread (or the next flush, where
            # there is no thread) carries on with the batch, backoff and all.
            self._handoff.append(batch)
            self._start()
            self._wake.set()

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
        batch.settled = True
        count = len(batch.entries)
        with self._lock:
            self._in_flight -= count
            if sent:
                self._delivered += count
            else:
                self._not_sent += count
        tracked = _tracked(batch)
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
        self._queue.settle(batch.start, batch.start + count, True)
        self._progress.settle(batch.start, batch.start + count)

    def _settle_internal_error(self, batch: _Batch, error: BaseException) -> None:
        if not batch.settled:
            self._settle_failed(
                batch, INTERNAL_ERROR, f"delivery stopped by {type(error).__name__}: {error}", None
            )

    def _settle_failed(self, batch: _Batch, code: str, reason: str, status: int | None) -> None:
        batch.settled = True
        count = len(batch.entries)
        with self._lock:
            self._in_flight -= count
        # A durable buffer deletes the rows, or keeps them for the next process when
        # only close()'s deadline stopped us; its note says so in the report.
        reason += self._queue.settle(batch.start, batch.start + count, code != SHUTDOWN_TIMEOUT)
        tracked = _tracked(batch)
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

    # -- flush and close ----------------------------------------------------------

    def _drain(self, before: int | None, deadline: float) -> None:
        """Send from the calling thread: only where the sender thread cannot.

        Holding the logging lock (inside dictConfig) with a live sender thread: one
        attempt per batch, failures handed to the thread with their backoff. With no
        thread at all: every batch to the end, retries included, within *deadline*.
        """
        hand_off = self._thread_alive()
        me = threading.get_ident()
        was_sending = me in sending_threads
        sending_threads.add(me)
        try:
            while time.monotonic() < deadline:
                batch = None
                if not hand_off:
                    with contextlib.suppress(IndexError):
                        batch = self._handoff.popleft()
                if batch is None:
                    batch = self._take(before)
                    if batch is None:
                        return
                try:
                    self._deliver(batch, deadline, hand_off=hand_off)
                except BaseException as error:
                    # Ctrl-C in flush(), say: never leave a batch unsettled and unowned,
                    # or every later flush() would wait for it.
                    if not batch.settled and not isinstance(error, Exception):
                        self._handoff.appendleft(batch)
                        self._wake.set()
                    elif not batch.settled:
                        self._settle_internal_error(batch, error)
                    raise
        finally:
            if not was_sending:
                sending_threads.discard(me)

    def _sends_itself(self, holding_lock: bool) -> bool:
        """Whether flush/close must send from the calling thread (see ``_drain``)."""
        return holding_lock or not self._thread_alive()

    def flush(self, timeout: float) -> bool:
        """Send everything accepted before this call; True when all of it is settled."""
        self.ensure_process()
        deadline = time.monotonic() + timeout
        target = self._queue.accepted
        if threading.get_ident() in sending_threads:
            # A callback (on_flush, on_error, a Future's) runs while its batch is being
            # settled, so waiting here would wait for that very batch, and hold up
            # every later one, for the whole timeout. Ask, and say how things stand.
            self._flush_upto = max(self._flush_upto, target)
            self._wake.set()
            return self._progress.wait(target, time.monotonic())
        if self._closed:
            # Closed (at exit, before logging.shutdown flushes the handlers): what is
            # left is close()'s, and its deadline is the only one.
            return self._progress.wait(target, min(deadline, self._close_deadline))
        holding_lock = _holding_logging_lock()
        if self._sends_itself(holding_lock):
            self._drain(target, deadline)
            if holding_lock:
                # The sender thread's in-flight batch may be waiting for the lock we
                # hold: it finishes once we return; waiting here only stalls dictConfig.
                deadline = time.monotonic()
        else:
            self._flush_upto = max(self._flush_upto, target)
            self._wake.set()
        return self._progress.wait(target, deadline)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float) -> None:
        """Stop accepting, deliver what is queued within *timeout*, report the rest."""
        if not self._begin_close(timeout):
            return
        if threading.get_ident() not in sending_threads:
            self._finish_close()
        elif not self._thread_alive():
            # From a callback, with no sender thread to finish the close: send the rest
            # from here (without waiting for the batch whose callback is running), or
            # it would wait for the exit hook, past its deadline.
            self._drain(None, self._close_deadline)
        # Otherwise (see flush) the sender thread finishes once the callback returns:
        # it sends what is left by the deadline and stops; the exit hook reports the rest.

    def _begin_close(self, timeout: float) -> bool:
        """Refuse new messages and tell the sender thread to send everything; False if
        already closed. Separate from waiting, so the exit hook can start every sender
        before it waits for any."""
        self.ensure_process()
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            self._close_deadline = time.monotonic() + timeout
        self._queue.close()
        self._close_target = self._queue.accepted
        self._stopping.set()
        self._wake.set()
        return True

    def _finish_close(self) -> None:
        holding_lock = _holding_logging_lock()
        if self._sends_itself(holding_lock):
            self._drain(None, self._close_deadline)
        if not holding_lock:
            self._progress.wait(self._close_target, self._close_deadline)
            self._abandon_leftovers()
            if self._progress.wait(self._close_target, time.monotonic()):
                self._transport.close()
        # Under the lock (dictConfig), batches handed to the sender thread stay its
        # own: it retries them until the close deadline, then reports what is left.
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
        """Wait for what close() started (the exit hook began it), then say what is unknown."""
        if not self._closed:
            self.close(self._options.shutdown_timeout)
        else:
            self._finish_close()
        with self._lock:
            unknown = self._in_flight
        if unknown:
            warn(
                f"{unknown} message(s) still in flight when shutdown_timeout="
                f"{self._options.shutdown_timeout:g}s ran out at exit; their outcome is unknown"
            )

    def _after_fork(self) -> None:
        """Reset for this process, once, however many threads notice the new pid at once."""
        pid = os.getpid()
        with process_lock("reset", pid):
            if self._pid == pid:
                return  # another thread of this child did it while we waited
            _reset_process(pid)
            self._reset(closed=self._closed)

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
    resolve_call(item.future, item.callback, error, message, scrub)


def resolve_call(
    future: Future[dict[str, Any]] | None,
    callback: Callable[[Exception | None, dict[str, Any]], object] | None,
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


# Every sender in this process, for the fork hook and the exit hook. Weak: a client
# the application dropped is not kept alive by being registered (its running thread
# keeps its sender alive until it is idle, which is what exit needs).
_SENDERS: weakref.WeakSet[Sender] = weakref.WeakSet()


# One lock per purpose and process id, made on first use: a lock inherited through fork
# may be held by a thread that no longer exists, but a new pid's lock is always new.
_PROCESS_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_process_pid = os.getpid()


def process_lock(purpose: str, pid: int | None = None) -> threading.Lock:
    """This process's lock for *purpose*, safe to take in a child forked with or
    without fork hooks (uWSGI): it was never held by a thread of the parent."""
    key = (purpose, os.getpid() if pid is None else pid)
    return _PROCESS_LOCKS.setdefault(key, threading.Lock())  # atomic: one per key


def _reset_process(pid: int) -> None:
    """Once per forked process: what every sender shares. Call with process_lock("reset", pid)."""
    global _process_pid
    if _process_pid == pid:
        return
    # The parent's sending threads do not exist here, and their idents can be reused by
    # the child's threads, whose records would then be ignored.
    sending_threads.clear()
    reseed_message_ids()  # else parent and child hand out the same messageIds
    random.seed()  # else every worker retries on the same jittered schedule
    _process_pid = pid


def _reset_all_after_fork() -> None:
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


_exit_hook_ran = False


def exit_hook_ran() -> bool:
    """Whether ``close_all`` has run: a client opened after it is closed by nobody."""
    return _exit_hook_ran


def close_all() -> None:
    """Deliver, within each one's shutdown_timeout, what every sender still holds.

    Every sender is told to close before any is waited for, so N clients deliver side
    by side and exit takes the longest shutdown_timeout, not their sum.
    """
    global _exit_hook_ran
    _exit_hook_ran = True
    senders = list(_SENDERS)
    for sender in senders:
        with contextlib.suppress(Exception):
            sender._begin_close(sender._options.shutdown_timeout)
    for sender in senders:
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
