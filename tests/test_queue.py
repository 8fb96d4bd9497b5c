"""MemoryBuffer: bounded, never blocking, batches bounded by count and bytes."""

from __future__ import annotations

import contextlib
import logging
import logging.config
import threading
from typing import Any

import pytest

from cdp_logging import AnalyticsHandler
from cdp_logging._buffers.base import CLOSED, FULL
from cdp_logging._buffers.memory import MemoryBuffer
from cdp_logging.collector import Collector

from .conftest import WRITE_KEY


class TestMemoryQueue:
    def test_full_queue_refuses_new(self) -> None:
        """Past max_size a put is refused (FULL) and the queue keeps what it had."""
        queue = MemoryBuffer(2)

        assert [queue.put(b"a"), queue.put(b"b"), queue.put(b"c")] == [1, 2, FULL]
        assert 2 == len(queue)

    def test_take_is_capped_by_count(self) -> None:
        """A take returns at most max_count entries, oldest first."""
        queue = MemoryBuffer(10_000)
        for i in range(3000):
            queue.put(b"%d" % i)

        first, batch = queue.take(2500, 500_000)

        assert (0, 2500, b"0") == (first, len(batch), batch[0])
        assert 500 == len(queue)

    def test_take_is_capped_by_bytes(self) -> None:
        """A take stops before the joined entries would pass max_bytes."""
        queue = MemoryBuffer(100)
        for _ in range(10):
            queue.put(b"x" * 99)

        _, batch = queue.take(100, 1000)  # each costs 100 with its comma

        assert 10 == len(batch)
        queue2 = MemoryBuffer(100)
        for _ in range(10):
            queue2.put(b"x" * 99)
        assert 9 == len(queue2.take(100, 999)[1])

    def test_every_way_of_taking_gives_back_exactly_the_room_taken(self) -> None:
        """The whole list (whose bytes the puts counted), a count-capped part (summed)
        and a byte-capped part (prefix sums) each free what they took, no more."""
        queue = MemoryBuffer(1000, max_bytes=400)

        def fill() -> int:
            """Put 40-byte entries until refused; how many went in."""
            added = 0
            while queue.put(b"x" * 40) > 0 and added < 100:
                added += 1
            return added

        assert 10 == fill()
        assert 10 == len(queue.take(100, 500_000)[1])  # everything queued
        assert 10 == fill()
        assert 4 == len(queue.take(4, 500_000)[1])  # capped by count
        assert 4 == fill()
        assert 3 == len(queue.take(100, 123)[1])  # capped by bytes: 3 x (40 + 1) fit in 123
        assert 3 == fill()
        assert 10 == len(queue)

    def test_sequence_numbers_and_before(self) -> None:
        """Entries are numbered in order; `before` stops a take at a sequence number."""
        queue = MemoryBuffer(100)
        for i in range(10):
            queue.put(b"%d" % i)

        assert (0, [b"0", b"1", b"2"]) == queue.take(100, 10_000, before=3)
        assert (3, [b"3"]) == queue.take(1, 10_000)
        assert 10 == queue.accepted

    def test_closed_queue_refuses_puts_but_drains(self) -> None:
        """After close a put is refused (CLOSED); what was queued can still be taken."""
        queue = MemoryBuffer(10)
        queue.put(b"a")
        queue.close()

        assert queue.put(b"b") == CLOSED
        assert [b"a"] == queue.take(10, 100)[1]

    def test_bytes_bound_refuses_new_and_take_gives_room_back(self) -> None:
        """Past max_bytes of data a put is refused (FULL); a take frees what it took."""
        queue = MemoryBuffer(1000, max_bytes=100)

        assert [queue.put(b"x" * 40), queue.put(b"y" * 40), queue.put(b"z" * 40)] == [1, 2, FULL]
        assert (0, [b"x" * 40]) == queue.take(1, 500_000)
        assert 2 == queue.put(b"z" * 40)
        assert FULL == queue.put(b"w" * 21)


class TestMaxQueueBytes:
    def test_large_events_are_bounded_by_bytes_not_count(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """Issue 24 (9): 10,000 events of 30 KB against a server that does not answer:
        with the default max_queue_bytes (32 MiB) the queue holds at most 32 MiB of them
        and every other one is refused and reported as queue_full (before: all 10,000,
        ~300 MB, were held)."""
        logging.config.dictConfig(
            {
                "version": 1,
                "incremental": False,
                "disable_existing_loggers": False,
                "handlers": {
                    "cdp": {
                        "class": "cdp_logging.AnalyticsHandler",
                        "write_key": WRITE_KEY,
                        "host": collector.url,
                        "shutdown_timeout": 0.2,
                        "stderr_warnings": False,
                    }
                },
                "loggers": {app_logger.name: {"handlers": ["cdp"], "propagate": False}},
            }
        )
        handler = app_logger.handlers[0]
        assert isinstance(handler, AnalyticsHandler)
        assert 33_554_432 == handler.client.options.max_queue_bytes
        collector.faults.latency(30.0, count=1)  # the first request is held: nothing drains
        padding = "p" * 30_000
        for i in range(10_000):
            app_logger.info(
                "track", extra={"user_id": str(i), "event": "E", "properties": {"p": padding}}
            )
        stats = handler.client.stats()

        # Each message is its 30,000 bytes of padding and a few hundred more.
        assert stats["pending"] * 30_000 <= 33_554_432
        assert stats["pending"] >= 33_554_432 // 31_000
        assert 10_000 == stats["queued"] + stats["errors"]["queue_full"]
        handler.close()


class _InterruptedLock:
    """The buffer's RLock, with Ctrl-C's KeyboardInterrupt at one point of acquire().

    A real signal cannot be aimed between two bytecodes; this puts its handler's
    exception exactly where one may land: just after acquire() took the lock
    (*taken*), or while acquire() still waited for it (not *taken*).
    """

    def __init__(self, lock: Any, *, taken: bool) -> None:
        self._lock = lock
        self._taken = taken
        self.armed = True

    def acquire(self) -> bool:
        if self.armed:
            self.armed = False
            if self._taken:
                self._lock.acquire()
            raise KeyboardInterrupt
        return bool(self._lock.acquire())

    def release(self) -> None:
        self._lock.release()

    def _is_owned(self) -> bool:
        return bool(self._lock._is_owned())

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class TestInterruptedPut:
    @pytest.mark.parametrize("taken", [True, False])
    def test_ctrl_c_in_put_leaves_the_lock_free(self, taken: bool) -> None:
        """The KeyboardInterrupt reaches the app, the lock is not left held (another
        thread could never put again) nor released unheld (a RuntimeError in its place)."""
        queue = MemoryBuffer(100)
        real = queue._lock
        queue._lock = _InterruptedLock(real, taken=taken)  # type: ignore[assignment]

        with pytest.raises(KeyboardInterrupt):
            queue.put(b"lost")
        other: list[int] = []
        thread = threading.Thread(target=lambda: other.append(queue.put(b"other")), daemon=True)
        thread.start()
        thread.join(5)

        assert ([1], 1) == (other, queue.put(b"next") - 1)
        assert [b"other", b"next"] == queue.take(10, 10_000)[1]
        assert not real._is_owned()  # type: ignore[attr-defined]


class _InterruptAfterCall:
    """The buffer's RLock, with Ctrl-C's KeyboardInterrupt right after its *n*-th call.

    A signal handler runs at the interpreter's check after a C call returns; one that
    raises there lands between that call and the next line. Every such point of put,
    one per test, whatever lock methods put calls in whatever order.
    """

    def __init__(self, lock: Any, n: int) -> None:
        self._lock = lock
        self._left = n
        self.fired = False

    def _after(self, result: Any) -> Any:
        self._left -= 1
        if self._left == 0:
            self.fired = True
            raise KeyboardInterrupt
        return result

    def acquire(self, *args: Any) -> Any:
        return self._after(self._lock.acquire(*args))

    def release(self) -> Any:
        return self._after(self._lock.release())

    def _is_owned(self) -> Any:
        return self._after(self._lock._is_owned())

    def __enter__(self) -> Any:
        # No check inside a C __enter__, nor between it and the block it guards.
        return self._lock.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class TestInterruptAnywhereInPut:
    @pytest.mark.parametrize("n", range(1, 6))
    def test_ctrl_c_after_any_lock_call_leaves_the_lock_free(self, n: int) -> None:
        """However the lock is taken and given back, a KeyboardInterrupt after any of
        those calls leaves it free: else the sender's take() waits for it for good, and
        nothing more is delivered."""
        queue = MemoryBuffer(100)
        real = queue._lock
        lock = _InterruptAfterCall(real, n)
        queue._lock = lock  # type: ignore[assignment]
        with contextlib.suppress(KeyboardInterrupt):
            queue.put(b"first")
        queue._lock = real
        other: list[int] = []
        thread = threading.Thread(target=lambda: other.append(queue.put(b"other")), daemon=True)
        thread.start()
        thread.join(5)

        assert not real._is_owned()  # type: ignore[attr-defined]
        assert 1 == len(other)
        if n == 1:
            assert lock.fired
