"""The writer thread: moves accepted messages from memory into the file.

Why a thread of its own, and not the sender's job: the sender can sit in one HTTP
request for ``timeout`` seconds (10 by default), and "accepted more than 0.5 s before a
SIGKILL survives it" needs a commit at least every few tenths of a second whatever the
network does. It also renews this process's lease and takes over dead owners' rows, so
a process that never logs still delivers the backlog it finds.

Why not everything at once: a message the sender takes and the server accepts within
``WRITE_AGE`` never touches the file (it was in memory for less than that). Writing
every message, then reading it back and deleting it, cost three trips through SQLite
per message on the threads that share the interpreter lock with a caller in a tight
loop, and starved delivery. Older messages, and all of them once memory holds
``SPOOL_COUNT``, are written at the next tick.

The thread is started by ``start()`` (the sender calls it once it is ready to be woken)
and ends by itself once its buffer is closed and has nothing left to keep a lease for;
its last act is closing the connection, so a reconfigured logging setup leaves neither
a thread nor a file descriptor behind.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Final

from ..._core.report import warn

__all__ = ["RETRY_SECONDS", "SPOOL_COUNT", "TICK", "WRITE_AGE", "Writer"]

TICK: Final = 0.05
# A message still unsettled this long after it was accepted is committed at the next
# tick. A message is counted at the first tick after it was accepted (up to a round
# later) and written at the first tick WRITE_AGE after that (up to another round), so
# the worst case is WRITE_AGE + two rounds + a commit: with 0.2 s and 0.1 s ticks that
# was ~0.55 s on an idle machine and 0.7 s with a caller spinning at the bound, past
# the 0.5 s a SIGKILL may take. Measured with these values, the oldest message only in
# memory in a tight loop at the bound: 0.23-0.32 s idle, 0.23-0.28 s beside two busy
# processes on two cores.
WRITE_AGE: Final = 0.1
# Memory holding this many wakes the writer at once, without waiting for the tick.
SPOOL_COUNT: Final = 2_000
RETRY_SECONDS: Final = 2.0


class Writer:
    """One daemon thread that runs *tick* every ``TICK`` s, or sooner when woken.

    *tick* returns True when the buffer is finished with the file: the thread then
    ends. The thread checks the pid: a forked child's copy of it never runs.
    """

    def __init__(self, name: str, tick: Callable[[], bool]) -> None:
        self._name = name
        self._tick = tick
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._retry_at = 0.0
        self._pid = os.getpid()

    @property
    def running(self) -> bool:
        thread = self.thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread unless it runs; quietly later if threads cannot start now."""
        with self._lock:
            if self.thread is not None or time.monotonic() < self._retry_at:
                return
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            try:
                thread.start()
            except RuntimeError:
                # At exit on 3.12.0-3.12.2, or out of threads: messages are sent from
                # memory meanwhile, and a later put tries again.
                self._retry_at = time.monotonic() + RETRY_SECONDS
                return
            self.thread = thread

    def wake(self) -> None:
        self._wake.set()

    def join(self, timeout: float) -> None:
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            if self._pid != os.getpid():
                return
            try:
                finished = self._tick()
            except Exception as error:  # noqa: BLE001 - a bug here must not stop the writes
                warn(f"{self._name}: writer error {type(error).__name__}: {error}")
                finished = False
            if finished:
                return
            self._wake.wait(TICK)
            self._wake.clear()
