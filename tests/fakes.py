"""A clock that moves only when the test moves it, for the sender's unit tests."""

from __future__ import annotations

import threading
import time

from cdp_logging._core.clock import Waitable

__all__ = ["ManualClock"]

# A wait on this clock that nothing ends (neither the waitable nor advance()) gives up
# after this much real time, so a broken test fails instead of hanging.
REAL_LIMIT = 10.0
# How often a waiting thread looks at the waitable between two moves of the clock:
# the waitable is an Event or a Condition, which cannot also wake on advance().
_POLL = 0.002


class ManualClock:
    """``monotonic()`` is what the test set; ``wait`` ends when the waitable is set or
    the test has advanced the clock past the wait's deadline."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Condition()
        self._deadlines: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self._lock.notify_all()

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        with self._lock:
            deadline = None if timeout is None else self._now + timeout
            if deadline is not None:
                self._deadlines.append(deadline)
            self._lock.notify_all()
        try:
            real_end = time.monotonic() + REAL_LIMIT
            while True:
                if waitable.wait(_POLL):
                    return True
                with self._lock:
                    if deadline is not None and self._now >= deadline:
                        return False
                if time.monotonic() > real_end:
                    raise TimeoutError("nothing ended a wait on the manual clock")
        finally:
            if deadline is not None:
                with self._lock:
                    self._deadlines.remove(deadline)
                    self._lock.notify_all()

    def wait_for_waiter(self, at: float, timeout: float = REAL_LIMIT) -> bool:
        """Block until some thread waits on this clock for the deadline *at*: it has
        decided to wait, so what it does next depends on advance() alone."""
        with self._lock:
            return self._lock.wait_for(
                lambda: any(abs(d - at) < 1e-6 for d in self._deadlines), timeout
            )
