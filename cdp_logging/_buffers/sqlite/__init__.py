"""An SQLite buffer that survives the process: ``buffer="sqlite:PATH"``.

The shape, and why:

* **The caller only appends to memory.** ``put`` is the memory buffer's ``put`` plus one
  bound check (``storage.Bound``): a list append under a short lock, never the file.
* **Memory holds everything not yet in the file; the writer thread (``writer``) commits
  it.** The sender takes from memory or from the file, whichever holds the next number;
  taking from memory copies (the entries stay until their batch settles), so a batch
  in flight is still written if it is not settled within ``WRITE_AGE``. A batch that
  is settled before then never touches the file: in a tight logging loop against a
  healthy server most messages go out without a single SQLite statement, where writing,
  reading back and deleting each one starved the sender.
* **What was written stays in memory until it is taken** (up to ``max_queue_size``
  entries in all), so a sender that lags a loop by more than ``SPOOL_COUNT`` (which
  makes the writer commit everything) still takes from memory: reading it back from
  the file made the sender wait for the file lock the writer held while the loop
  starved it of the interpreter lock. It reads the file only for what memory had to
  let go: a backlog past ``max_queue_size``, rows taken over from a dead process, rows
  a previous process left.
* **Deletes never make the sender wait.** A settled batch's rows are deleted by the
  sender when the file lock is free, else by the writer at its next tick (and before
  it leaves the file at close).
* **A row leaves the file only when its batch settles** (delivered, or failed for good
  and reported). Rows of a batch that failed because close() ran out of time, because
  the server refused our configuration, or because its retries ran out, stay for the
  next process that opens the file. A process killed mid-request leaves its rows, so
  the next one resends them with the same messageIds: a duplicate, never a loss.
* **Leases** (``lease``): whose rows are whose, and when a dead owner's rows are ours.
* **Nothing here raises into the app.** A file that cannot be created, is not an SQLite
  file, is corrupt, is locked by another program, or is on a full disk gets one stderr
  line naming the path and the fix; messages then wait in memory (bounded by
  ``max_queue_size``) and are sent from there. Locked and full are retried.
* **Fork.** A connection must not cross a fork
  (https://www.sqlite.org/howtocorrupt.html#_carrying_an_open_database_connection_across_a_fork_):
  a fork hook closes every buffer's connection just before the fork, with its lock held
  so no thread is inside SQLite; each side opens a new one on its next use.

Sequence numbers are this process's: rows it takes over get the next ones, so ``flush()``
(which waits for every number below ``accepted``) waits for them too. What this process
will never send itself (another process took it over, the file broke) it hands back to
the sender through ``gone``, with the calls waiting on it, to be settled as ``kept``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Final

from ..._core.report import warn
from ..base import CLOSED, FULL, Entry, Gone, Local, Tracked
from .lease import ADOPT_INTERVAL, LEASE_SECONDS, read_owners
from .spool import Spooling
from .storage import BUSY_TIMEOUT_MS, DATA, fit
from .writer import SPOOL_COUNT, Writer

__all__ = ["ADOPT_INTERVAL", "LEASE_SECONDS", "SQLiteQueue"]

_QUEUES: weakref.WeakSet[SQLiteQueue] = weakref.WeakSet()
_HELD_AT_FORK: list[threading.Lock] = []


def _before_fork() -> None:
    """Close every connection, each with its buffer's lock held through the fork."""
    for queue in sorted(_QUEUES, key=id):
        # Bounded: a thread inside SQLite holds the lock for at most a busy timeout.
        if queue._db_lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000 + 1):
            _HELD_AT_FORK.append(queue._db_lock)
            queue._drop_connection()


def _after_fork() -> None:
    while _HELD_AT_FORK:
        _HELD_AT_FORK.pop().release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)


# A writer round older than this while messages arrive: the caller yields (see put).
# Two ticks: a round that takes longer is being starved of the interpreter lock.
STARVED_SECONDS: Final = 0.1
# How long close() waits, once everything is settled, for the writer's last deletes.
RELEASE_SECONDS: Final = 1.0


class SQLiteQueue(Spooling, Local):
    """The ``Buffer`` of ``buffer="sqlite:PATH"``: see the module docstring, and
    ``state`` for the fields and locks its parts share."""

    def __init__(
        self,
        path: str,
        max_bytes: int,
        max_memory: int,
        *,
        wake: Callable[[], object] = lambda: None,
        gone: Gone = lambda start, end, waiters, reason: None,
    ) -> None:
        super().__init__(path, max_bytes, max_memory, wake=wake, gone=gone)
        self._writer = Writer(f"cdp_logging-buffer-{id(self):x}", self._tick)
        _QUEUES.add(self)

    def __repr__(self) -> str:
        return f"<SQLiteQueue {self.path!r}>"

    # -- the caller's side: memory only ------------------------------------------------

    @property
    def accepted(self) -> int:
        # Until the writer has looked for a backlog, flush() would not know to wait for
        # it: wait for that look (bounded by a busy timeout), once.
        writer = self._writer.thread
        if not self._looked.is_set() and writer not in (None, threading.current_thread()):
            self._looked.wait(BUSY_TIMEOUT_MS / 1000 + 1)
        owned = self._owned()
        with self._lock:
            if self._reentered and not owned:
                self._add_reentered()
            return self._pending_start + len(self._pending) + len(self._reentered)

    def put(self, entry: Entry) -> int:
        if self._owned():  # a signal handler: its thread is inside a region of ours
            return self._put_reentered(entry)
        untaken = 0
        with self._lock:
            if self._adopting:  # numbered once the adoption's transaction ends
                return self._put_reentered(entry)
            if self._reentered:
                self._add_reentered()
            if self._closed:
                return CLOSED
            count = len(self._pending)
            if count >= self._max_memory and self._committed > self._pending_start:
                self._evict(self._committed)  # the file holds these: memory makes room
                count = len(self._pending)
            size = len(entry)
            refused = count >= self._max_memory or not self._bound.fits(size)
            if not refused:
                self._pending.append(entry)
                self._bound.reserve(size)
                # What waits in memory untaken, not the file's backlog: past half of
                # max_queue_size the sender makes the caller hand over the interpreter
                # lock, which should mean "the sender lags", not "the host is down and
                # the file holds a backlog" (counted so, every call of an outage paid
                # ~80 us for it).
                untaken = self._pending_start + count + 1 - max(self._head, self._pending_start)
            if self._reentered:  # a signal handler's, while this put held the lock
                self._add_reentered()
        if refused:
            self._yield_if_starved()  # outside the lock: the writer may need it
            return FULL
        if count + 1 == SPOOL_COUNT:
            self._writer.wake()
        elif self._writer.thread is None and self._started:
            self._writer.start()  # it could not start before (out of threads): again
        self._yield_if_starved()
        return untaken

    def _yield_if_starved(self) -> None:
        """Hand the interpreter lock over once, if the writer has not finished a round
        for longer than a message may live only in memory.

        A caller logging as fast as it can (above all at the bound, where its calls are
        refused as fast as it makes them) holds the interpreter lock; the writer thread
        gives it up at every SQLite call and, with the caller spinning, waits up to the
        switch interval (5 ms) to get it back each time: its first round took 2.6 s, and
        a SIGKILL then lost everything accepted. Only while the writer lags does the call
        pay for the switch; otherwise it is one clock read.
        """
        if time.monotonic() - self._ticked_at > STARVED_SECONDS and self._started:
            time.sleep(0)

    def start(self) -> None:
        """The sender is ready to be woken: start the writer, which looks for a backlog."""
        self._started = True
        self._writer.start()

    def close(self) -> None:
        owned = self._owned()
        with self._lock:
            if self._reentered and not owned:
                self._add_reentered()
            self._closed = True
            kept = self._kept
            if kept:
                # Rows kept for a later process: hand the lease back now, or this
                # process would hold them while it lives.
                self._releases.append((0, 0))
        # Before close() returns, so a client made next finds them free (rare: only
        # after a refused configuration or retries that ran out). Not from a callback
        # of this buffer's own (it holds the lock): the writer's next tick does it then.
        if kept and self._pid == os.getpid() and self._db_lock.acquire(timeout=0.1):
            try:
                if self._open() and time.monotonic() >= self._write_retry_at:
                    self._spool(0)
            finally:
                self._db_lock.release()
            self._hand_back_now()
        self._writer.wake()

    def release(self) -> None:
        """Everything is settled: let the writer delete what the sender left to it (a
        settle that found the file busy) and leave the file, before the process may
        end; bounded, a file locked by another program costs RELEASE_SECONDS at most."""
        if self._pid != os.getpid():
            return
        self._writer.wake()
        self._writer.join(RELEASE_SECONDS)

    def __len__(self) -> int:
        if self._head < self._pending_start and time.monotonic() < self._read_retry_at:
            return 0  # the file cannot be read now: the writer wakes the sender later
        # What waits aside during an adoption is not counted: it cannot be taken yet
        # (the sender would ask again and again), and the adoption wakes the sender.
        # Under the lock: an eviction moves memory's start after shortening it, and a
        # sum read between the two would undercount (to 0, and the sender would wait
        # for a wake that may not come).
        with self._lock:
            aside = 0 if self._adopting else len(self._reentered)
            return self._pending_start + len(self._pending) + aside - self._head

    # -- the sender's side -------------------------------------------------------------

    def take(
        self, max_count: int, max_bytes: int, before: int | None = None
    ) -> tuple[int, list[Entry]]:
        if self._pid != os.getpid():
            return self._head, []  # a stale copy in a forked child: never used
        owned = self._owned()
        with self._lock:
            if self._reentered and not owned:
                self._add_reentered()
            head = self._head
            if head >= self._pending_start:  # from memory: a copy, see the docstring
                offset = head - self._pending_start
                count = min(max_count, len(self._pending) - offset)
                if before is not None:
                    count = min(count, before - head)
                if count <= 0:
                    return head, []
                entries = fit(self._pending[offset : offset + count], max_bytes)
                self._head = head + len(entries)
                return head, entries
        with self._file():
            if not self._open():
                self._read_retry_at = max(self._read_retry_at, self._open_retry_at)
                return self._head, []
            with self._lock:
                head, limit = self._head, self._pending_start
            if before is not None:
                limit = min(limit, before)
            entries = self._read(head, min(max_count, limit - head), limit, max_bytes)
            if not entries:
                return self._head, []
            with self._lock:
                first = self._head
                self._head = first + len(entries)
            return first, entries

    def _read(self, head: int, count: int, limit: int, max_bytes: int) -> list[Entry]:
        """Our next rows from the file, from *head* on, consecutive, within *max_bytes*."""
        conn = self._conn
        assert conn is not None
        if count <= 0 or time.monotonic() < self._read_retry_at:
            return []
        try:
            rows = conn.execute(
                "SELECT seq, data FROM messages WHERE owner = ? AND seq >= ? AND seq < ? "
                "ORDER BY seq LIMIT ?",
                (self._token, head, limit, count),
            ).fetchall()
        except sqlite3.Error as error:
            self._trouble(error, read=True)
            return []
        if not rows or rows[0][0] != head:
            # Another process took our rows over (we were stopped past the lease): they
            # are its to send; for us they are settled.
            self._lost(head, rows[0][0] if rows else limit)
            if not rows:
                return []
            head = rows[0][0]
        if rows[-1][0] != head + len(rows) - 1:  # a gap: up to it; the next take settles it
            rows = rows[: next(i for i, row in enumerate(rows) if row[0] != head + i)]
        # Per-row work in C (itemgetter, map): this runs while the app logs. Cut to the
        # request's size before the waiters are attached: a waiter taken off for a row
        # left behind would never hear how it ended.
        entries: list[Entry] = fit(list(map(DATA, rows)), max_bytes)
        if self._tracked or self._futures:
            for seq in range(head, head + len(entries)):
                tracked = self._tracked.pop(seq, None)
                if tracked is None:
                    future = self._futures.pop(seq, None)
                    if future is not None:
                        tracked = Tracked(entries[seq - head], future, None)  # type: ignore[arg-type]
                if tracked is not None:
                    entries[seq - head] = tracked
        return entries

    def _lost(self, start: int, end: int) -> None:
        if end <= start:
            return
        if not self._given_up:
            warn(
                f"buffer {self.path}: {end - start} message(s) of this process were taken over "
                f"by another process sharing the file (this one was stopped for over "
                f"{LEASE_SECONDS:g}s); that process sends them"
            )
        with self._lock:
            self._head = max(self._head, end)
        self._hand_back(
            start,
            end,
            f"taken over by another process sharing {self.path} (this one was stopped past "
            "its lease), which sends it",
        )

    def settle(self, start: int, end: int, final: bool) -> str:
        """Forget [start, end) (*final*), or keep it for the next process; returns a note
        for the report ("" when nothing is kept)."""
        if self._pid != os.getpid():
            return ""
        if self._broken:
            with self._lock:
                self._forget(max(start, self._pending_start), end)
            return ""
        if not final:
            with self._file():
                # Kept: into the file now, before the report of it returns (a process
                # that ends right after must not take them along), lease and all.
                with self._lock:
                    note = self._keep(start, end)
                if self._open() and time.monotonic() >= self._write_retry_at:
                    self._spool(end)
                return note
        with self._lock:
            written = min(end, self._written)
            self._forget(max(start, self._pending_start), end)
            if self._settled_meanwhile is not None:
                self._settled_meanwhile.append((start, end))
            if written <= start:
                return ""  # never written: memory only, no file
            self._deletes.append((start, written))
        # Slice by slice, so the rows are gone when the batch is settled; but only if
        # the writer is not inside the file: waiting for it is what starved the sender
        # (the writer, short of the interpreter lock while a loop logs, holds the file
        # lock for many switch intervals). Its next tick deletes them then.
        if not self._db_lock.acquire(blocking=False):
            self._writer.wake()
            return ""
        try:
            if self._conn is not None and time.monotonic() >= self._write_retry_at:
                for _ in range(64):  # bounded; the writer's next tick takes what is left
                    if not self._deletes or not self._guarded(lambda: self._write(0)):
                        break
        finally:
            self._db_lock.release()
            self._hand_back_now()
        return ""

    def _keep(self, start: int, end: int) -> str:
        """Rows that stay for a later process: behind our head, and our lease handed back
        once this client closes (at once if it has)."""
        self._kept = True
        if self._closed:
            self._releases.append((start, end))
        return self.kept_note()

    def kept_note(self) -> str:
        return f"; kept in {self.path}: the next process that opens it sends them"

    # -- for cdp-logging drain and tests ------------------------------------------------

    def adopt_now(self) -> bool:
        """Take over, now, what owners that are gone left; False if the file is unusable."""
        with self._file():
            if not self._open():
                return False
            self._orphans_possible = True
            adopted = self._guarded(self._adopt)
        self._writer.start()  # keeps our lease while the rows are sent
        return adopted

    def adopt_now_pending(self) -> bool:
        """Whether the last adoption stopped at ADOPT_BATCH rows (more may be waiting)."""
        return self._orphans_possible

    def remaining(self) -> tuple[int, int]:
        """Rows left in the file: (nobody alive owns them, a live process owns them).

        Reads through a connection of its own when this buffer is done with the file
        (closed), so asking never makes it an owner again."""
        with self._db_lock:
            if self._broken:
                return -1, 0
            conn = self._conn
            try:
                if conn is None:
                    conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
                try:
                    owners = read_owners(conn, self._token)
                    dead = set(self._watch.dead(owners, time.monotonic()))
                    live = [owner.token for owner in owners if owner.token not in dead]
                    marks = ",".join("?" * len(live)) or "NULL"
                    theirs = conn.execute(
                        f"SELECT count(*) FROM messages WHERE owner IN ({marks})",  # noqa: S608 - only ?s
                        live,
                    ).fetchone()[0]
                    total = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
                finally:
                    if conn is not self._conn:
                        conn.close()
            except sqlite3.Error:
                return -1, 0
            return int(total) - int(theirs), int(theirs)

    def rows(self) -> int:
        """Rows in the file, whoever owns them; -1 when it cannot be read."""
        with self._db_lock:
            if self._conn is None:
                return -1
            try:
                return int(self._conn.execute("SELECT count(*) FROM messages").fetchone()[0])
            except sqlite3.Error:
                return -1
