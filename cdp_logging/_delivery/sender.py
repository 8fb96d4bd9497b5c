"""The sender thread: when to send, and one batch from its first attempt to its end.

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
  (https://github.com/open-telemetry/opentelemetry-python/issues/3193).
* On Python 3.12.0-3.12.2 a thread cannot be started from an atexit hook
  (https://github.com/python/cpython/issues/113964); a process that logs its first
  event at exit has no sender thread, and the exit hook delivers it from its own
  thread, retries and all.
* A forked child has the parent's queue but not its thread; it gets a fresh queue,
  fresh locks and no thread until it logs
  (https://github.com/open-telemetry/opentelemetry-python/issues/4005).

The sender is handed what it works with, as OpenTelemetry's BatchProcessor is handed its
exporter: a buffer factory (called once per process: a forked child makes its own), a
transport, and a clock that every deadline and wait is measured on, so a unit test can
replace each. The rest lives beside it, one job per module: the buffers
(``_buffers``), what goes in a request and how a batch is halved (``batch``), the retry
policy (``_core.retry``), how a batch ends and the counters (``settle``), the process
around the senders: registry, fork, exit (``_core.process``), and HTTP
(``_transports``).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from .._buffers import BufferFactory
from .._buffers.base import FULL as QUEUE_FULL_SIGNAL
from .._buffers.base import Buffer, Entry, Tracked, entry_data
from .._compat import holding_logging_lock
from .._core.clock import SYSTEM_CLOCK, Clock
from .._core.errors import CLOSED, HTTP_STATUS, NETWORK, QUEUE_FULL, SHUTDOWN_TIMEOUT
from .._core.options import DEFAULT_HOST, Options
from .._core.process import (
    deliver_at_multiprocessing_exit,
    process_lock,
    register,
    reset_process,
    sending_threads,
)
from .._core.protocol import MAX_BATCH_MESSAGES
from .._core.report import Reporter, warn
from .._transports.base import (
    BufferFull,
    Outcome,
    Response,
    Transport,
    TransportError,
    classify,
)
from .age import Ages
from .batch import MAX_BODY_ITEMS_BYTES, Batch, Narrowing, body, http_reason, narrowing_budget
from .settle import Ledger, Progress
from .terminate import deliver_on_terminate
from .wake import Wake

__all__ = ["Sender"]

# A request is not started with less time than this left before its deadline: it could
# not finish, and would only hold the caller (or exit) past the deadline.
MIN_REQUEST_SECONDS: Final = 0.05
# After "can't start new thread", how long calls leave the thread alone before trying
# again (each try costs the calling thread; a process out of threads may get some back).
THREAD_RETRY_SECONDS: Final = 1.0


def _host_words(host: str) -> str:
    """The host as a network failure names it: the default one says how to set another,
    for an app that meant a local collector but never told us (CDP_HOST unset)."""
    if host == DEFAULT_HOST:
        return f"{host} (the default host: host= or CDP_HOST sets another)"
    return host


class Sender:
    """Owns, per process, the queue, the sender thread and the delivery bookkeeping.

    ``closed`` and ``pid`` are plain attributes, read by the client at every call: an
    attribute costs one lookup where a property costs a call. Only the sender writes
    them.
    """

    closed: bool
    pid: int

    def __init__(
        self,
        options: Options,
        transport: Transport,
        reporter: Reporter,
        scrub: Callable[[str], str],
        *,
        buffer: BufferFactory,
        owns_transport: bool,
        clock: Clock = SYSTEM_CLOCK,
        carried: dict[str, int] | None = None,
    ) -> None:
        self._options = options
        self._make_buffer = buffer
        self._clock = clock
        # The counters of the senders this client had before this one (a reopened
        # client's stats() count since the client started, not since it reopened).
        self._carried = dict(carried or {})
        self._retry = options.retry
        self._max_retries = options.max_retries
        # The queue lengths at which a put wakes the sender (see submit).
        self._wake_sizes = frozenset((1, options.max_events_in_batch))
        self._high_water = options.max_queue_size // 2
        self._transport = transport
        # What the library did not create, it does not close: a transport the
        # application passed in may be shared, or be reused by a reopened handler.
        self._owns_transport = owns_transport
        self._reporter = reporter
        self._scrub = scrub
        self._reset()
        register(self)

    def _reset(self, *, closed: bool = False) -> None:
        """Fresh per-process state: at construction, and in a forked child.

        Nothing is copied from the parent: its locks may have been held by a thread
        that does not exist here, and its queue is the parent's to send (once). A
        client the parent closed stays closed. ``pid`` is set last: threads of a child
        that forked without hooks wait in ``after_fork`` until all is fresh.
        """
        self._wake = Wake()  # rung by logging calls, maybe from a signal handler
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._starting: int | None = None  # the thread inside _start, holding _lock
        self._thread: threading.Thread | None = None
        # After a failed thread start, when to try again (monotonic); until then
        # flush()/close() send from the calling thread.
        self._retry_thread_at = 0.0
        self._warned_no_thread = False
        self.closed = closed
        progress = Progress(self._clock)
        # A durable buffer hands back numbers this process will never send itself (the
        # file broke, another process took them over), and wakes us for rows it took
        # over from a dead one.
        self._queue = self._make_buffer(self._wake_now, self._buffer_gone)
        # A buffer that forwards what is taken from it (the Redis stream's) gets each
        # batch's messages instead of the transport getting its body.
        self._forward = self._queue.forward if self._queue.forwards else None
        self._ledger = Ledger(
            self._options.on_flush, self._reporter, self._scrub, self._queue, progress
        )
        # When messages were queued, for the metrics' oldest-age gauge (``age``). The
        # first mark covers a process that never gets a sender thread.
        self._ages = Ages(self._clock)
        self._idle_from = 0
        self._ages.mark(0, self._clock.monotonic(), 0)
        self._close_deadline = math.inf
        # The timeout close() was given: reports name it, not shutdown_timeout's default.
        self._close_timeout: float = self._options.shutdown_timeout
        self._close_target = 0
        self._handoff: deque[Batch] = deque()
        self._urgent = False
        self._flush_upto = 0  # flush() wants every sequence number below this sent now
        self._last_flush = -math.inf
        if closed:
            self._queue.close()
            self._stopping.set()
        else:
            self._queue.start()  # everything it may call back is in place
        self.pid = os.getpid()

    # -- the application's side -------------------------------------------------

    def ensure_process(self) -> None:
        """Reset if this is a forked child that no fork hook has reset yet.

        uWSGI without --py-call-uwsgi-fork-hooks forks without running the
        os.register_at_fork hooks, so this pid check, made by every call before it
        builds its message (whose messageId must come from this process), is the one
        that always works.
        """
        if self.pid != os.getpid():
            self.after_fork()

    def submit(self, entry: Entry, urgent: bool = False) -> str | None:
        """Queue one serialised message; return None, or the error code if refused.

        Never blocks on anything but the queue's own short lock. The caller has called
        ``ensure_process`` first.
        """
        size = self._queue.put(entry)
        if size <= 0:
            return QUEUE_FULL if size == QUEUE_FULL_SIGNAL else CLOSED
        if self._thread is None and self._clock.monotonic() >= self._retry_thread_at:
            self._start()
        if size > self._high_water:
            # Past half full, hand the interpreter lock over once, so a sender thread
            # starved by a tight logging loop gets to run. It returns at once when the
            # sender is waiting on the network (which releases the lock), so the caller
            # never waits for the network; it only stops outrunning the sender. Measured
            # on 100,000 calls in a loop against a slow sink: 13-36% dropped without it,
            # none with it.
            time.sleep(0)
        if size in self._wake_sizes or urgent:
            # Wake only on the transitions that can change the sender's decision:
            # the first message (start the interval clock, or send at once), a full
            # batch, or a flush trigger. Setting an Event on every call costs a lock.
            if urgent:
                self._urgent = True
            self._wake.set()
        return None

    def without_thread(self) -> None:
        """Send only from the threads that flush or close: no sender thread is started.

        For a sender opened after the exit hook, whose ``close()`` must have settled
        every message before it returns.
        """
        self._retry_thread_at = math.inf

    @property
    def buffer(self) -> Buffer:
        """The buffer messages wait in (``cdp-logging drain`` asks a durable one to adopt)."""
        return self._queue

    def _wake_now(self) -> None:
        """A durable buffer took over rows a dead process left: send them now, also in
        a process that has logged nothing (and so has no sender thread yet)."""
        self._urgent = True
        if self._thread is None:
            self._start()
        self._wake.set()

    def _buffer_gone(self, start: int, end: int, waiters: list[Tracked], reason: str) -> None:
        self._ledger.gone(start, end, waiters, reason)

    def _start(self) -> None:
        # Never wait for this lock here: a logging call in a signal handler may have
        # interrupted this very thread while it held it, starting the sender, and would
        # wait forever. Whoever holds it starts the thread, or is closing the sender.
        if not self._lock.acquire(blocking=False):
            return
        self._starting = threading.get_ident()
        try:
            now = self._clock.monotonic()
            if self._thread is not None or self.closed or now < self._retry_thread_at:
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
                self._retry_thread_at = self._clock.monotonic() + THREAD_RETRY_SECONDS
                if not self._warned_no_thread and "shutdown" not in str(error):
                    self._warned_no_thread = True
                    warn(f"cannot start the sender thread ({error}); sending at flush/close")
                return
            # The thread is a daemon so that a DNS lookup hung outside every timeout
            # cannot keep the process alive; exit delivery waits for it, bounded.
            self._thread = thread
        finally:
            self._starting = None
            self._lock.release()
        deliver_at_multiprocessing_exit()
        deliver_on_terminate()

    def _thread_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- the sender thread --------------------------------------------------------

    def _run(self) -> None:
        sending_threads.add(threading.get_ident())
        self._mark_awake()  # started by the first message: it was queued just now
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self._deliver(batch, math.inf, hand_off=False)
                except Exception as error:  # noqa: BLE001 - settle it, keep the thread
                    self._ledger.failed_internally(batch, error)
                except BaseException as error:
                    self._ledger.failed_internally(batch, error)
                    raise
        finally:
            sending_threads.discard(threading.get_ident())
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None  # a later call starts a new one, unless closed
            if self.closed and self._ledger.progress.wait(self._close_target, 0.0):
                # A close() made under logging's lock (dictConfig replacing this handler)
                # leaves the last batches to this thread: now they are settled, nobody
                # else would give the connection back (contract 18).
                self._release()

    def _next_batch(self) -> Batch | None:
        """Wait until a flush is due, then take one request's worth."""
        options = self._options
        while True:
            try:
                return self._handoff.popleft()
            except IndexError:
                pass
            count = len(self._queue)
            now = self._clock.monotonic()
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
            else:
                self._idle_from = self._queue.accepted
            self._clock.wait(self._wake, timeout)
            self._wake.clear()
            if not count:
                self._mark_awake()

    def _mark_awake(self) -> None:
        """Idle no more: what was queued since the queue was found empty is new."""
        self._ages.mark(self._idle_from, self._clock.monotonic(), self._ledger.progress.settled)

    def _take(self, before: int | None = None) -> Batch | None:
        now = self._clock.monotonic()  # before reading accepted: see _delivery.age
        self._ages.mark(self._queue.accepted, now, self._ledger.progress.settled)
        start, entries = self._queue.take(MAX_BATCH_MESSAGES, MAX_BODY_ITEMS_BYTES, before)
        if not entries:
            return None
        self._ledger.taken(len(entries))
        return Batch(start, entries)

    # -- one batch, start to end --------------------------------------------------

    def _deliver(self, batch: Batch, deadline: float, *, hand_off: bool) -> None:
        """Send *batch* until it is settled, halved, or *deadline* (or close's) passes.

        With *hand_off*, make one attempt and give a retryable failure to the sender
        thread, with its backoff: the caller (inside dictConfig) must not sleep, and
        retrying at once would hammer a server that asked us to wait.
        """
        if not self._options.send:
            self._ledger.delivered(batch, sent=False)
            return
        joined = batch.join()
        while True:
            if not self._wait_until_due(batch, deadline):
                return
            remaining = min(deadline, self._close_deadline) - self._clock.monotonic()
            if remaining < MIN_REQUEST_SECONDS:
                self._out_of_time(batch)
                return
            status: int | None = None
            retry_after: float | None = None
            self._ledger.requested()
            try:
                response = self._send(batch, joined, min(self._options.timeout, remaining))
            except BufferFull as error:
                self._ledger.failed(batch, QUEUE_FULL, self._scrub(str(error)), None)
                return
            except TransportError as error:
                outcome = Outcome.RETRY
                reason = (
                    f"could not reach {_host_words(self._options.host)}: {self._scrub(str(error))}"
                )
            except Exception as error:  # noqa: BLE001 - a custom transport's bug is a network error to us
                outcome = Outcome.RETRY
                reason = f"transport raised {type(error).__name__}: {self._scrub(str(error))}"
            else:
                status = response.status
                retry_after = response.retry_after
                outcome = classify(status)
                reason = http_reason(self._options.endpoint, status, self._scrub(response.text))
            if outcome is Outcome.DELIVERED:
                self._ledger.delivered(batch, sent=True)
                return
            if outcome is not Outcome.RETRY:
                self._refused(batch, outcome, reason, status, hand_off)
                return
            if batch.attempts >= self._max_retries:
                code = HTTP_STATUS if status is not None else NETWORK
                tries = batch.attempts + 1
                self._ledger.failed(
                    batch, code, f"gave up after {tries} attempts: {reason}", status
                )
                return
            batch.attempts += 1
            batch.not_before = self._clock.monotonic() + self._retry.delay(
                batch.attempts, retry_after
            )
            batch.last_reason, batch.last_status = reason, status
            self._ledger.retrying()
            if hand_off:
                self._handoff.append(batch)
                self._wake.set()
                return

    def _send(self, batch: Batch, joined: bytes, timeout: float) -> Response:
        if self._forward is not None:
            messages = [entry_data(entry) for entry in batch.entries]
            return self._forward(messages, timeout, self._post)
        return self._transport.send(body(joined), timeout)

    def _post(self, messages: list[bytes], timeout: float) -> Response:
        """What a forwarding buffer falls back on when it cannot take a batch: the POST."""
        return self._transport.send(body(b",".join(messages)), timeout)

    def _refused(
        self, batch: Batch, outcome: Outcome, reason: str, status: int | None, hand_off: bool
    ) -> None:
        """The server will not take this request as it is: halve it, or fail it.

        A 413 halves the batch down to single messages: each half is smaller, and only
        a message that is alone too large fails. A 400 halves it to find the message(s)
        refused, within ``narrowing_budget`` extra requests shared by all its halves, so
        a batch in which every message is bad costs a few dozen requests, not one per
        message. What the budget leaves refused fails together, with the server's reason.
        """
        count = len(batch.entries)
        if count > 1 and batch.narrowing is None:
            # The budget belongs to the batch as taken from the queue: halves made by
            # a 413 share it, so 413s then 400s cannot multiply it.
            batch.narrowing = Narrowing(narrowing_budget(count))
        if count > 1 and outcome is Outcome.TOO_LARGE:
            self._split(batch, hand_off)
            return
        if count > 1 and outcome is Outcome.REFUSED:
            assert batch.narrowing is not None
            if batch.narrowing.left >= 2:
                batch.narrowing.left -= 2
                self._split(batch, hand_off)
                return
            reason += f"; not narrowed further: its {count} messages were refused together"
        elif count == 1 and outcome is Outcome.TOO_LARGE:
            size = len(batch.join())
            reason += f"; this message alone is {size:,} bytes, over that server's limit"
        self._ledger.failed(batch, HTTP_STATUS, reason, status)

    def _split(self, batch: Batch, hand_off: bool) -> None:
        """Put the batch's halves first in line, in order; the halves now own its messages."""
        batch.settled = True  # settled through its halves: nobody may settle it again
        first, second = batch.halves()
        self._handoff.extendleft((second, first))
        if hand_off:
            self._wake.set()

    def _wait_until_due(self, batch: Batch, deadline: float) -> bool:
        """Sleep until the batch's next attempt is due; False if it left our hands."""
        while True:
            wait = batch.not_before - self._clock.monotonic()
            if wait <= 0:
                return True
            if batch.not_before > min(deadline, self._close_deadline) - MIN_REQUEST_SECONDS:
                self._out_of_time(batch)
                return False
            if self._stopping.is_set():
                self._clock.wait(threading.Event(), wait)  # a sleep, bounded: not_before < deadline
                return True
            # close() sets _stopping: wake up and measure the wait against its deadline.
            self._clock.wait(self._stopping, wait)

    def _out_of_time(self, batch: Batch) -> None:
        """The deadline comes before the batch can be (re)tried: report it, or pass it on."""
        # No lock here: when this runs on the main thread (a flush sending itself), a
        # signal handler may close the client at any point in it, and close() taking a
        # lock this thread held would wait forever. The order makes the lock needless:
        # the batch is in the handoff before `closed` is read, and close() sets `closed`
        # before it reports what the handoff holds; so either close() finds the batch
        # there, or we see `closed` and take it back, and exactly one of us reports it
        # (deque's append, remove and popleft are atomic).
        self._handoff.append(batch)
        if not self.closed:
            # A flush() ran out of time: the sender thread (or the next flush, where
            # there is no thread) carries on with the batch, backoff and all.
            self._start()
            self._wake.set()
            return
        try:
            self._handoff.remove(batch)
        except ValueError:
            return  # close() (or the sender thread) took it first: it settles it
        last = f"; last attempt: {batch.last_reason}" if batch.last_reason else ""
        self._ledger.failed(
            batch,
            SHUTDOWN_TIMEOUT,
            f"not delivered within {self._timeout_words()}{last}",
            batch.last_status,
        )

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
            while self._clock.monotonic() < deadline:
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
                    else:
                        self._ledger.failed_internally(batch, error)
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
        progress = self._ledger.progress
        deadline = self._clock.monotonic() + timeout
        target = self._queue.accepted
        if threading.get_ident() in sending_threads:
            # A callback (on_flush, on_error, a Future's) runs while its batch is being
            # settled, so waiting here would wait for that very batch, and hold up
            # every later one, for the whole timeout. Ask, and say how things stand.
            self._flush_upto = max(self._flush_upto, target)
            self._wake.set()
            return progress.wait(target, self._clock.monotonic())
        if self.closed:
            # Closed (at exit, before logging.shutdown flushes the handlers): what is
            # left is close()'s, and its deadline is the only one.
            return progress.wait(target, min(deadline, self._close_deadline))
        holding_lock = holding_logging_lock()
        if self._sends_itself(holding_lock):
            self._drain(target, deadline)
            if holding_lock:
                # The sender thread's in-flight batch may be waiting for the lock we
                # hold: it finishes once we return; waiting here only stalls dictConfig.
                deadline = self._clock.monotonic()
        else:
            self._flush_upto = max(self._flush_upto, target)
            self._wake.set()
        return progress.wait(target, deadline)

    def close(self, timeout: float) -> None:
        """Stop accepting, deliver what is queued within *timeout*, report the rest."""
        if not self.begin_close(timeout):
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

    def begin_close(self, timeout: float | None = None) -> bool:
        """Refuse new messages and tell the sender thread to send everything.

        Returns False if already closed. Separate from waiting, so the exit hook can
        start every sender before it waits for any. *timeout* defaults to
        ``shutdown_timeout``.
        """
        self.ensure_process()
        if timeout is None:
            timeout = self._options.shutdown_timeout
        # A signal handler that closes the client while this very thread holds the lock
        # to start the sender thread would wait for itself forever. Then close without
        # it: the interrupted start still starts the thread, which finds `closed` and
        # the stop flag set, sends what is left and ends.
        reentered = self._starting == threading.get_ident()
        if not reentered:
            self._lock.acquire()
        try:
            if self.closed:
                return False
            self.closed = True
            self._close_deadline = self._clock.monotonic() + timeout
            self._close_timeout = timeout
        finally:
            if not reentered:
                self._lock.release()
        self._queue.close()
        self._close_target = self._queue.accepted
        self._stopping.set()
        self._wake.set()
        return True

    def _finish_close(self) -> None:
        holding_lock = holding_logging_lock()
        if self._sends_itself(holding_lock):
            self._drain(None, self._close_deadline)
        if not holding_lock:
            progress = self._ledger.progress
            progress.wait(self._close_target, self._close_deadline)
            self._abandon_leftovers()
            if progress.wait(self._close_target, self._clock.monotonic()):
                self._release()
        # Under the lock (dictConfig), batches handed to the sender thread stay its
        # own: it retries them until the close deadline, then reports what is left.
        self._reporter.summarise()

    def _release(self) -> None:
        """Give back the buffer's and the transport's resources, once everything is settled.

        Called by close() when it saw everything settled, or by the sender thread when it
        ends after a close() that could not wait (under logging's lock): whichever is
        last. Idempotent: the buffer's ``release`` and a transport's ``close`` may run
        twice when both see it settled at once, and both are safe to repeat.
        """
        self._queue.release()
        if self._owns_transport:
            self._transport.close()

    def _timeout_words(self) -> str:
        """The close deadline as a report names it: the timeout close() was given."""
        timeout = self._close_timeout
        if timeout == self._options.shutdown_timeout:
            return f"shutdown_timeout={timeout:g}s"
        return f"the close timeout of {timeout:g}s"

    def _abandon_leftovers(self) -> None:
        """Report, as shutdown_timeout, what close() had no time left to send."""
        reason = (
            f"still queued when {self._timeout_words()} ran out; "
            "allow more time or check that the host is reachable"
        )
        while True:
            try:
                batch = self._handoff.popleft()
            except IndexError:
                taken = self._take()
                if taken is None:
                    return
                batch = taken
            self._ledger.failed(batch, SHUTDOWN_TIMEOUT, reason, None)

    def at_exit(self) -> None:
        """Wait for what close() started (the exit hook began it), then say what is unknown."""
        if not self.closed:
            self.close(self._options.shutdown_timeout)
        else:
            self._finish_close()
        unknown = self._ledger.in_flight
        if unknown:
            warn(
                f"{unknown} message(s) still in flight when {self._timeout_words()} ran out "
                "at exit; their outcome is unknown"
            )

    def after_fork(self) -> None:
        """Reset for this process, once, however many threads notice the new pid at once."""
        pid = os.getpid()
        with process_lock("reset", pid):
            if self.pid == pid:
                return  # another thread of this child did it while we waited
            reset_process(pid)
            # The reporter is the client's, shared with the senders it opened before;
            # reset it only here, where its lock may be a parent thread's and its counts
            # are the parent's.
            self._reporter.reset_after_fork()
            self._carried = {}
            self._reset(closed=self.closed)

    # -- numbers ------------------------------------------------------------------

    def oldest_age(self) -> float:
        """Seconds the oldest message not yet settled has waited, at most (0.0: none)."""
        oldest = self._ledger.progress.settled
        if oldest >= self._queue.accepted:
            return 0.0
        return self._ages.age(oldest)

    def stats(self) -> dict[str, int]:
        """This sender's counters, plus those it carried over from the client's earlier ones."""
        numbers = self._ledger.numbers()
        current = {
            "queued": self._queue.accepted,
            "pending": len(self._queue) + numbers["in_flight"],
            **numbers,
        }
        carried = self._carried
        return {
            key: value + (carried.get(key, 0) if key not in ("pending", "in_flight") else 0)
            for key, value in current.items()
        }
