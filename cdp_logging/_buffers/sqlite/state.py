"""What the SQLite buffer's parts share: its memory, its numbers, its file's state.

Why a base of its own: the caller's side (``put``), the sender's (``take``, ``settle``),
the connection's health (``connection``) and the writer's work (``spool``) all read and
change these under two locks, always taken in this order: ``_db_lock`` (the connection,
and the file's numbers: a thread holding it sees no commit half done) then ``_lock``
(memory: ``_pending``, ``_head``, the bound), which ``put`` holds for an append at most.
Declared once here, each part is a module that can be read on its own.

What this process will never send itself (another process took it over, the file
broke) is handed back to the sender through ``gone`` once ``_db_lock`` is released:
the sender settles it and runs the application's callbacks, which may call back in.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from ..base import Entry, Gone, Tracked
from .lease import Watch
from .storage import Bound

__all__ = ["State"]


class State:
    """The fields; the hand-back of numbers that are not ours to send."""

    def __init__(
        self,
        path: str,
        max_bytes: int,
        max_memory: int,
        *,
        wake: Callable[[], object] = lambda: None,
        gone: Gone = lambda start, end, waiters, reason: None,
    ) -> None:
        self.path = path
        self._max_memory = max_memory
        self._wake_sender = wake
        self._gone = gone
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._pending: list[Entry] = []  # every number from _pending_start on
        self._pending_start = 0
        self._head = 0  # next number to take: below _pending_start, it is in the file
        # Settled for good while still in memory, past the first unsettled one: never
        # written, dropped from memory once everything before them is.
        self._done: list[tuple[int, int]] = []
        self._marks: deque[tuple[float, int]] = deque()  # (when, accepted) per tick
        self._closed = False
        # Written entries someone may wait on, by seq. A callback is held here (nobody
        # else holds it); a Future only weakly: one the app dropped costs nothing.
        self._tracked: dict[int, Tracked] = {}
        self._futures: weakref.WeakValueDictionary[int, Future[dict[str, Any]]] = (
            weakref.WeakValueDictionary()
        )
        wal = max_bytes // 4
        self._db_limit = max_bytes - wal
        self._wal_limit = wal
        self._bound = Bound(self._db_limit)
        # One transaction writes at most this much, so the WAL (checkpointed at half its
        # allowance) stays inside its quarter of the bound; halved while the file is at
        # the bound, so what still fits goes in.
        self._chunk = max(16 * 1024, wal // 4)
        self._chunk_now = self._chunk
        # Rows one transaction deletes at most: a delete appends every page it touches
        # to the WAL; in slices, the automatic checkpoint runs between them.
        self._delete_rows = max(16, self._chunk // 512)
        self._conn: sqlite3.Connection | None = None
        self._page = 4096
        self._broken = False  # for good: memory only
        self._finished = False  # closed and done with the file: never reopened
        self._write_retry_at = 0.0
        self._read_retry_at = 0.0
        self._open_retry_at = 0.0
        self._warned: dict[str, float] = {}
        self._recovered_at = -1.0
        self._token = random.getrandbits(62) + 1
        self._watch = Watch()
        self._looked = threading.Event()  # the writer's first look for a backlog is done
        self._started = False  # start() was called: the writer should run
        # When the writer last finished a round (monotonic): a caller that sees it
        # lagging hands over the interpreter lock once per put (see ``put``).
        self._ticked_at = time.monotonic()
        self._given_up = False  # our lease handed back at close: nothing renews it
        self._deletes: list[tuple[int, int]] = []
        self._releases: list[tuple[int, int]] = []
        self._next_heartbeat = 0.0
        self._next_adopt = 0.0
        self._orphans_possible = True
        self._kept = False  # rows kept behind the head for a later process
        self._handbacks: list[tuple[int, int, list[Tracked], str]] = []
        self._pid = os.getpid()

    def _hand_back(self, start: int, end: int, reason: str) -> None:
        """Numbers [start, end) are not ours to send: to the sender, with their waiters."""
        if end <= start:
            return
        waiters: list[Tracked] = []
        if self._tracked or self._futures:
            for seq in range(start, end):
                tracked = self._tracked.pop(seq, None)
                future = self._futures.pop(seq, None) if tracked is None else None
                if tracked is None and future is not None:
                    tracked = Tracked(b"{}", future, None)
                if tracked is not None:
                    waiters.append(tracked)
        # Told once the file lock is released (``_file``): the sender settles them and
        # runs the application's callbacks, which may call into this buffer again.
        self._handbacks.append((start, end, waiters, reason))

    @contextlib.contextmanager
    def _file(self) -> Iterator[None]:
        """``_db_lock``, and what was handed back meanwhile told after releasing it."""
        try:
            with self._db_lock:
                yield
        finally:
            self._hand_back_now()

    def _hand_back_now(self) -> None:
        while True:
            try:
                start, end, waiters, reason = self._handbacks.pop(0)
            except IndexError:
                return
            self._gone(start, end, waiters, reason)
