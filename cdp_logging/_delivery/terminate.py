"""Delivery when a ``multiprocessing`` worker is terminated (``with Pool() as p:``).

``Pool.__exit__`` calls ``terminate()``, which sends each worker SIGTERM. Its default
action ends the process at once: no atexit hook, no multiprocessing finalizer, so what
the worker queued is gone, silently, and the parent's exit status is still 0.

So, in a multiprocessing child only, and only where SIGTERM still has its default
action (an application's own handler, or one inherited from the parent, is left alone),
the sender installs a handler when it starts. The handler does no delivery itself: it
may have interrupted the main thread inside one of our locks. It restores the default
action (a second SIGTERM ends the process at once), starts a thread, and returns. That
thread delivers what every client holds, within each one's ``shutdown_timeout``, then
sends SIGTERM again, so the process ends exactly as ``terminate()`` meant (exit code
-15), only later. ``Pool.terminate`` waits for its workers to end, so the pool's exit
waits for the delivery.

PostHog and Sentry leave this to the application (flush in a task hook, or handle
SIGTERM yourself); a logging handler is configured once, far from the pool, so here
the library does it.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
from types import FrameType

from .._core.process import close_all

__all__ = ["deliver_on_terminate"]

_installed_pid: int | None = None


def deliver_on_terminate() -> None:
    """In a multiprocessing child, deliver before SIGTERM's default action ends it."""
    global _installed_pid
    pid = os.getpid()
    if _installed_pid == pid:
        return
    process = sys.modules.get("multiprocessing.process")
    if process is None or process.parent_process() is None:
        return  # not a multiprocessing child: the application owns its signals
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            _installed_pid = pid
            return  # the application's own handler (or SIG_IGN): theirs to decide
        signal.signal(signal.SIGTERM, _on_terminate)
    except ValueError:
        return  # not the main thread: a later call from it installs it
    _installed_pid = pid


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)
    try:
        # _thread, not threading: threading.Thread.start takes module locks the
        # interrupted main thread may hold.
        _thread.start_new_thread(_deliver_then_end, (signum,))
    except RuntimeError:  # no thread to be had: end as the default action would have
        os.kill(os.getpid(), signum)


def _deliver_then_end(signum: int) -> None:
    try:
        close_all()
    finally:
        os.kill(os.getpid(), signum)  # the default action again: the process ends
