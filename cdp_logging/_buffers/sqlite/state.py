"""What the SQLite buffer's parts share: its memory, its numbers, its file's state.

Why a base of its own: the caller's side (``put``), the sender's (``take``, ``settle``),
the connection's health (``connection``) and the writer's work (``spool``) all read and
change these under two locks, always taken in this order: ``_db_lock`` (the connection,
and the file's numbers: a thread holding it sees no commit half done) then ``_lock``
(memory: ``_pending``, ``_written``, ``_head``, ``_done``, ``_deletes``, the bound), which
``put`` holds for an append (and, with memory full, for dropping what the file holds).
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
from bisect import insort
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, NamedTuple

from ..base import CLOSED, FULL, Entry, Gone, Tracked
from .lease import Watch
from .storage import Bound, all_bytes, weight

__all__ = ["Memory", "State"]


class Memory(NamedTuple):
    """Memory as it was before an adoption handed it over to the file (to put back)."""

    start: int
    written: int
    entries: list[Entry]
    done: list[tuple[int, int]]


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
        # An RLock, for a signal handler that logs while its thread holds it (see
        # ``_put_reentered``); other threads wait for it as for a Lock.
        self._lock = threading.RLock()
        # Whether this thread holds _lock: the protocol threading.Condition relies on.
        self._owned: Callable[[], bool] = self._lock._is_owned  # type: ignore[attr-defined]
        self._reentered: deque[Entry] = deque()
        self._db_lock = threading.Lock()
        self._pending: list[Entry] = []  # every number from _pending_start on
        self._pending_start = 0
        # Numbers below this are in the file (or being written, or settled unwritten);
        # from _pending_start to here memory keeps a copy of what the file has, so the
        # sender takes it from memory (see ``_evict`` for when the copy goes).
        self._written = 0
        # Numbers below this are committed: ``_written`` moves when a transaction takes
        # its chunk, this once it commits. Only copies below it may leave memory: a
        # chunk whose transaction fails is then still there to write again.
        self._committed = 0
        self._head = 0  # next number to take: below _pending_start, it is in the file
        # Settled for good while still in memory, past the first unsettled one: dropped
        # from memory once everything before them is (and never written if not yet).
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
        # Ranges settled while an adoption holds memory handed over (``_hand_over``):
        # forgotten again if it fails and memory comes back.
        self._settled_meanwhile: list[tuple[int, int]] | None = None
        # An adoption's transaction runs: puts wait aside (``_reentered``) and are
        # numbered once it ends, after the adopted rows if it committed. Numbered
        # before, they took numbers (counted in ``accepted``) that a failure took back.
        self._adopting = False
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

    # -- a signal handler's put -------------------------------------------------------

    def _put_reentered(self, entry: Entry) -> int:
        """*put* from a signal handler whose thread was interrupted holding ``_lock``.

        A handler runs in the main thread between two bytecodes, maybe in the middle
        of changing memory (numbers, the bound, an adoption swapping ``_pending``); a
        Lock made it wait for its own thread forever. Its entry waits aside, one atomic
        append, and gets its number when ``_add_reentered`` runs: at the next put,
        take, ``accepted`` or close, or the writer's next tick, whichever comes first."""
        if self._closed:
            return CLOSED
        count = len(self._pending) + len(self._reentered)
        if count >= self._max_memory or not self._bound.fits(len(entry)):
            return FULL
        self._reentered.append(entry)
        return count + 1

    def _add_reentered(self) -> None:
        """Number what signal handlers left aside (``_lock`` held, by no region that
        was interrupted: the caller checked ``_owned`` before taking it)."""
        if self._adopting:
            return  # numbered once the adoption ends (``_handed_over``, ``_take_back``)
        reentered = self._reentered
        while reentered:  # bounded: a handler adds only while this thread is in here
            entry = reentered.popleft()
            self._pending.append(entry)
            self._bound.reserve(len(entry))

    # -- memory: what leaves it, and when (``_lock`` held) ---------------------------

    def _forget(self, start: int, end: int) -> None:
        """Drop settled entries still in memory (``_lock`` held)."""
        if end <= start:
            return
        insort(self._done, (start, end))
        self._drop_settled()

    def _drop_settled(self) -> None:
        """Settled ranges that now start memory leave it (``_lock`` held). What was never
        written gives its room in the file's estimate back; what was, gave it when
        written (``Bound.written``)."""
        while self._done and self._done[0][0] <= self._pending_start:
            high = self._done.pop(0)[1]
            if high > self._pending_start:
                self._drop_front(high - self._pending_start)

    def _drop_front(self, count: int) -> list[Entry]:
        """The first *count* entries leave memory (``_lock`` held); returned. What of
        them was never written gives its room in the file's estimate back."""
        gone = self._pending[:count]
        del self._pending[:count]
        unwritten = gone[max(0, self._written - self._pending_start) :]
        if unwritten:
            self._bound.release(weight(unwritten))
        self._pending_start += count
        self._written = max(self._written, self._pending_start)
        return gone

    def _trim_done(self) -> None:
        """Settled ranges below memory's new start are gone with it (``_lock`` held)."""
        upto = self._pending_start
        self._done = [(max(low, upto), high) for low, high in self._done if high > upto]
        self._drop_settled()

    def _evict(self, upto: int) -> None:
        """Let memory's copy of what the file holds go, below *upto* (at most
        ``_committed``; ``_lock`` held). The sender reads what it has not taken of it
        from the file; so who waits on those entries is kept (``_remember``)."""
        count = min(upto, self._written, self._committed) - self._pending_start
        if count <= 0:
            return
        start = self._pending_start
        gone = self._drop_front(count)  # all written: nothing to give back
        if self._head < self._pending_start:
            self._remember(start, gone, self._head)
        if self._done:
            self._trim_done()

    def _drop_taken(self) -> None:
        """The file is given up (``_lock`` held): what the sender took leaves memory,
        written or not. It holds its own copies of a batch in flight; a batch kept for
        the file can no longer reach it; either would stay in memory for good, and
        every range settled after it behind it (they leave only from the front)."""
        count = self._head - self._pending_start
        if count <= 0:
            return
        self._drop_front(count)
        self._trim_done()

    def _remember(self, start: int, entries: list[Entry], head: int) -> None:
        """Keep who waits on entries leaving memory untaken (see ``_tracked``)."""
        if all_bytes(entries):
            return
        for i, entry in enumerate(entries):
            seq = start + i
            if type(entry) is Tracked and seq >= head:
                if entry.callback is not None:
                    self._tracked[seq] = entry
                elif entry.future is not None:
                    self._futures[seq] = entry.future

    def _hand_over(self, start: int, written: int) -> Memory:
        """All of memory goes to the file in an adoption's transaction, which ends at
        *start*; puts meanwhile wait aside (``_adopting``). *written*: ``_written``
        before the transaction's chunk moved it, to put back."""
        memory = Memory(self._pending_start, written, self._pending, self._done)
        self._pending, self._done = [], []
        self._pending_start = self._written = start
        self._settled_meanwhile = []
        self._adopting = True
        return memory

    def _take_back(self, memory: Memory) -> None:
        """The adoption failed: memory as it was, then what was put and settled since."""
        self._adopting = False
        self._pending = memory.entries + self._pending
        self._pending_start = memory.start
        self._written = memory.written
        self._done = memory.done
        settled, self._settled_meanwhile = self._settled_meanwhile or [], None
        for start, end in settled:
            self._forget(max(start, self._pending_start), end)
        self._add_reentered()

    def _handed_over(self, memory: Memory, unwritten: int, adopted: int) -> None:
        """The adoption committed *adopted* rows, numbered from where memory ended: who
        waits on what was untaken is kept, the room the unwritten part held in the
        file's estimate is given back, and what was put meanwhile numbered after."""
        self._settled_meanwhile = None
        self._adopting = False
        self._pending_start = self._written = self._committed = self._pending_start + adopted
        if self._head < self._pending_start:
            self._remember(memory.start, memory.entries, self._head)
        self._bound.release(unwritten)
        self._add_reentered()
