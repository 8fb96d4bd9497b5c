"""``Wake``: the sender thread's doorbell, which a logging call rings without waiting.

``threading.Event.set`` takes the Event's Condition lock, a plain ``Lock``. A signal
handler runs in the main thread between two bytecodes, maybe while that thread is inside
``set()`` with the lock held; a logging call in the handler would then ring the bell
and wait forever for its own thread. Here the bell is a bare lock used as a binary
semaphore: locked means "not rung". Ringing is ``release()``, one C call that never
waits (a bell already rung raises, and stays rung); the sender thread waits with
``acquire(timeout=...)``, which releases the GIL like any lock wait.
"""

from __future__ import annotations

import contextlib
import threading

__all__ = ["Wake"]


class Wake:
    """The ``set``/``clear``/``wait``/``is_set`` of ``threading.Event``, for one waiter,
    with a ``set`` that never blocks (safe from a signal handler)."""

    __slots__ = ("_bell",)

    def __init__(self) -> None:
        self._bell = threading.Lock()
        self._bell.acquire()  # not rung

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # already rung: it stays rung
            self._bell.release()

    def clear(self) -> None:
        self._bell.acquire(blocking=False)

    def is_set(self) -> bool:
        return not self._bell.locked()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until rung (or *timeout* seconds); it stays rung until ``clear``."""
        if timeout is None:
            rung = self._bell.acquire()
        else:
            rung = self._bell.acquire(timeout=max(0.0, min(timeout, threading.TIMEOUT_MAX)))
        if rung:
            self.set()  # as an Event: waiting does not consume it
        return rung
