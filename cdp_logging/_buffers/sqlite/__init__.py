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
from typing import Any, Final

from ..._core.report import warn
from ..base import CLOSED, FULL, Entry, Gone, Tracked
from .lease import ADOPT_INTERVAL, HEARTBEAT_INTERVAL, LEASE_SECONDS, Watch, read_owners, renew
from .storage import (
    ADVICE,
    BUSY_TIMEOUT_MS,
    DATA,
    ROW_OVERHEAD,
    Bound,
    all_bytes,
    close_quietly,
    delete_ranges,
    first_rows,
    fit,
    insert_rows,
    kind,
    open_file,
    prefix,
    rollback,
    used_bytes,
)
from .writer import RETRY_SECONDS, SPOOL_COUNT, TICK, WRITE_AGE, Writer

__all__ = ["ADOPT_INTERVAL", "LEASE_SECONDS", "SQLiteQueue"]

PROBLEM_INTERVAL: Final = 60.0
ADOPT_BATCH: Final = 20_000

# Every connection opened and not yet closed by us, kept referenced: should one cross a
# fork after all (the hook could not take its buffer's lock in time), the child must
# neither use nor close it (closing would release the parent's locks).
_CONNECTIONS: list[sqlite3.Connection] = []
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


class SQLiteQueue:
    """The ``Buffer`` of ``buffer="sqlite:PATH"``: see the module docstring.

    Two locks, always taken in this order: ``_db_lock`` (the connection, and the file's
    numbers: a thread holding it sees no commit half done) then ``_lock`` (memory:
    ``_pending``, ``_head``, the bound), which ``put`` holds for an append at most.
    """

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
        self._writer = Writer(f"cdp_logging-buffer-{id(self):x}", self._tick)
        self._looked = threading.Event()  # the writer's first look for a backlog is done
        self._started = False  # start() was called: the writer should run
        self._given_up = False  # our lease handed back at close: nothing renews it
        self._deletes: list[tuple[int, int]] = []
        self._releases: list[tuple[int, int]] = []
        self._next_heartbeat = 0.0
        self._next_adopt = 0.0
        self._orphans_possible = True
        self._kept = False  # rows kept behind the head for a later process
        self._handbacks: list[tuple[int, int, list[Tracked], str]] = []
        self._pid = os.getpid()
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
        with self._lock:
            return self._pending_start + len(self._pending)

    def put(self, entry: Entry) -> int:
        with self._lock:
            if self._closed:
                return CLOSED
            count = len(self._pending)
            size = len(entry)
            if count >= self._max_memory or not self._bound.fits(size):
                return FULL
            self._pending.append(entry)
            self._bound.reserve(size)
            untaken = self._pending_start + count + 1 - self._head
        if count + 1 == SPOOL_COUNT:
            self._writer.wake()
        elif self._writer.thread is None and self._started:
            self._writer.start()  # it could not start before (out of threads): again
        # Everything not yet taken, the file's backlog included: past half of
        # max_queue_size the sender makes the caller hand over the interpreter lock, as
        # with the memory buffer. Counting only memory (which the writer keeps short)
        # let a tight loop outrun a sender that had a backlog to send.
        return untaken

    def start(self) -> None:
        """The sender is ready to be woken: start the writer, which looks for a backlog."""
        self._started = True
        self._writer.start()

    def close(self) -> None:
        with self._lock:
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

    def __len__(self) -> int:
        if self._head < self._pending_start and time.monotonic() < self._read_retry_at:
            return 0  # the file cannot be read now: the writer wakes the sender later
        return self._pending_start + len(self._pending) - self._head

    # -- the sender's side -------------------------------------------------------------

    def take(
        self, max_count: int, max_bytes: int, before: int | None = None
    ) -> tuple[int, list[Entry]]:
        if self._pid != os.getpid():
            return self._head, []  # a stale copy in a forked child: never used
        with self._lock:
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
            entries = self._read(head, min(max_count, limit - head), limit)
            if not entries:
                return self._head, []
            entries = fit(entries, max_bytes)
            with self._lock:
                first = self._head
                self._head = first + len(entries)
            return first, entries

    def _read(self, head: int, count: int, limit: int) -> list[Entry]:
        """Our next rows from the file, from *head* on, consecutive."""
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
        # Per-row work in C (itemgetter, map): this runs while the app logs.
        entries: list[Entry] = list(map(DATA, rows))
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

    def settle(self, start: int, end: int, final: bool) -> str:
        """Forget [start, end) (*final*), or keep it for the next process; returns a note
        for the report ("" when nothing is kept)."""
        if self._pid != os.getpid():
            return ""
        if self._broken:
            with self._lock:
                self._forget(max(start, self._pending_start), end)
            return ""
        if final:
            with self._lock:
                if start >= self._pending_start:  # never written: memory only, no file
                    self._forget(start, end)
                    return ""
        with self._file():
            if not final:
                # Kept: into the file now, before the report of it returns (a process
                # that ends right after must not take them along), lease and all.
                with self._lock:
                    note = self._keep(start, end)
                if self._open() and time.monotonic() >= self._write_retry_at:
                    self._spool(end)
                return note
            with self._lock:
                written = min(end, self._pending_start)
                self._forget(written, end)
            self._deletes.append((start, written))
            if self._conn is not None and time.monotonic() >= self._write_retry_at:
                # Slice by slice, so the rows are gone when the batch is settled;
                # bounded, the writer's next tick takes what is left.
                for _ in range(64):
                    if not self._deletes or not self._guarded(lambda: self._write(0)):
                        break
            return ""

    def _keep(self, start: int, end: int) -> str:
        """Rows that stay for a later process: behind our head, and our lease handed back
        once this client closes (at once if it has)."""
        self._kept = True
        if self._closed:
            self._releases.append((start, end))
        return self.kept_note()

    def _forget(self, start: int, end: int) -> None:
        """Drop settled entries still in memory (``_lock`` held)."""
        if end <= start:
            return
        insort(self._done, (start, end))
        while self._done and self._done[0][0] <= self._pending_start:
            high = self._done.pop(0)[1]
            count = high - self._pending_start
            if count > 0:
                gone = self._pending[:count]
                del self._pending[:count]
                self._bound.release(sum(map(len, gone)) + ROW_OVERHEAD * len(gone))
                self._pending_start = high

    def kept_note(self) -> str:
        return f"; kept in {self.path}: the next process that opens it sends them"

    # -- the writer's side -------------------------------------------------------------

    def _tick(self) -> bool:
        """One round of the writer thread; True once it is done with the file."""
        try:
            with self._file():
                if self._pid != os.getpid():
                    return True
                self._maintain()
                return self._finish()
        finally:
            self._looked.set()

    def _maintain(self) -> None:
        """Write what is due, settle deletes, renew our lease, take over dead owners."""
        now = time.monotonic()
        with self._lock:
            self._marks.append((now, self._pending_start + len(self._pending)))
        due = self._due(now)  # every tick, so the marks never pile up
        if now >= self._read_retry_at > 0:
            # The sender was told there was nothing to read (len 0): let it try again.
            self._read_retry_at = 0.0
            self._wake_sender()
        if not self._open():
            return
        if now >= self._write_retry_at:
            with self._lock:
                writes = due > self._pending_start
            if writes or self._deletes or self._releases or now >= self._next_heartbeat:
                self._spool(due)
            if not self._closed and now >= self._next_adopt:
                self._guarded(self._adopt)

    def _due(self, now: float) -> int:
        """Numbers below this must be written now: what is older than WRITE_AGE, or
        everything when closing or when memory holds many untaken."""
        marks = self._marks
        due = 0
        while marks and marks[0][0] <= now - WRITE_AGE:
            due = marks.popleft()[1]
        with self._lock:
            accepted = self._pending_start + len(self._pending)
            if self._closed or accepted - max(self._head, self._pending_start) >= SPOOL_COUNT:
                return accepted
        return due

    def _spool(self, due: int) -> None:
        """Write up to *due*, one chunk per transaction (bounded: puts go on meanwhile)."""
        for _ in range(64):
            if not self._guarded(lambda: self._write(due)):
                if self._chunk_now <= ROW_OVERHEAD or not self._bound.full:
                    return
                continue  # at the bound: a smaller chunk may still fit
            with self._lock:
                more = due > self._pending_start
            if not more and not self._deletes:
                return

    def _finish(self) -> bool:
        """Closed and nothing of ours left to keep a lease for: leave the file."""
        with self._lock:
            if not self._closed or self._pending or self._deletes or self._releases:
                return False
        conn = self._conn
        if conn is not None and not self._given_up:
            try:
                # The sender may still deliver within close()'s deadline: the lease is
                # renewed until no row is ours, so nobody takes those rows meanwhile.
                if conn.execute(
                    "SELECT 1 FROM messages WHERE owner = ? LIMIT 1", (self._token,)
                ).fetchone():
                    return False
                conn.execute("DELETE FROM owners WHERE token = ?", (self._token,))
            except sqlite3.Error:
                return False  # locked: look again at the next tick
        self._finished = True
        self._drop_connection()
        return True

    # -- the connection ----------------------------------------------------------------

    def _open(self) -> bool:
        """The connection, opened on first use in this process; False: memory only now."""
        if self._conn is not None:
            return True
        if self._broken or self._finished or time.monotonic() < self._open_retry_at:
            return False
        conn = None
        try:
            conn, page = open_file(self.path, self._db_limit, self._wal_limit)
            _CONNECTIONS.append(conn)
            conn.execute("BEGIN IMMEDIATE")
            renew(conn, self._token, released=self._given_up)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as error:
            problem = kind(error)
            self._problem(problem, error)
            if problem in ("locked", "full", "other"):
                self._open_retry_at = time.monotonic() + RETRY_SECONDS
            else:
                self._break()
            if conn is not None:
                close_quietly(conn)
                _CONNECTIONS.remove(conn)
            return False
        self._conn, self._page = conn, page
        self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL
        self._measure()
        self._recovered()
        return True

    def _drop_connection(self) -> None:
        """Close ours (``_db_lock`` held): before a fork, and when done with the file."""
        conn, self._conn = self._conn, None
        if conn is not None:
            close_quietly(conn)
            if conn in _CONNECTIONS:
                _CONNECTIONS.remove(conn)

    def _problem(self, problem: str, error: BaseException) -> None:
        """One stderr line per kind of trouble (a minute apart at most)."""
        now = time.monotonic()
        if now - self._warned.get(problem, -PROBLEM_INTERVAL) < PROBLEM_INTERVAL:
            return
        self._warned[problem] = now
        warn(f"buffer {self.path}: {error} ({problem}): {ADVICE[problem]}")

    def _recovered(self) -> None:
        if any(at > self._recovered_at for at in self._warned.values()):
            warn(f"buffer {self.path}: usable again; messages are written to it")
        self._recovered_at = time.monotonic()

    def _trouble(self, error: BaseException, *, read: bool) -> None:
        problem = kind(error)
        self._problem(problem, error)
        if problem in ("corrupt", "unwritable"):
            self._break()
        elif read:
            self._read_retry_at = time.monotonic() + RETRY_SECONDS
        else:
            self._write_retry_at = time.monotonic() + RETRY_SECONDS

    def _break(self) -> None:
        """For good: memory only. Rows we had in the file stay there for a later process
        (or ``cdp-logging drain``); this one no longer waits for them."""
        self._broken = True
        with self._lock:
            self._bound.unbounded()
            start, end = self._head, self._pending_start
            self._head = max(self._head, end)
        self._hand_back(
            start,
            end,
            f"kept in {self.path}, which this process can no longer use; the next process "
            f"that opens it, or cdp-logging drain {self.path}, sends it",
        )
        self._tracked.clear()
        self._futures.clear()

    def _guarded(self, work: Callable[[], object]) -> bool:
        """Run one write; on failure roll back, say why once, and retry later or give up."""
        conn = self._conn
        assert conn is not None
        try:
            work()
        except (sqlite3.Error, OSError) as error:
            rollback(conn)
            self._measure()
            if kind(error) == "full" and self._bound.used >= self._bound.budget * 0.8:
                # Our own bound (max_page_count), not the disk: the estimate was short.
                # Refuse new messages until deletes make room, and try a smaller chunk.
                with self._lock:
                    self._bound.refused()
                self._chunk_now = max(ROW_OVERHEAD, self._chunk_now // 2)
                self._write_retry_at = time.monotonic() + TICK
                return False
            self._trouble(error, read=False)
            return False
        self._chunk_now = min(self._chunk, self._chunk_now * 2)
        if self._write_retry_at:
            self._write_retry_at = 0.0
            self._recovered()
        return True

    def _measure(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            used = used_bytes(conn, self._page)
        except sqlite3.Error:
            return
        with self._lock:
            self._bound.measured(used)

    # -- writes ------------------------------------------------------------------------

    def _chunk_of_memory(
        self, upto: int, max_bytes: int
    ) -> tuple[int, list[Entry], list[range], list[tuple[int, int]], int]:
        """Remove from memory what one transaction writes (``_lock`` held): its first
        number, entries, the settled ranges among them (skipped), those ranges as they
        were (to put back on failure), and the head then."""
        start = self._pending_start
        batch = self._pending[: prefix(self._pending[: max(0, upto - start)], max_bytes)]
        end = start + len(batch)
        removed = [done for done in self._done if done[0] < end]
        if removed:
            rest = [(max(low, end), high) for low, high in removed if high > end]
            self._done = sorted(rest + self._done[len(removed) :])
        del self._pending[: len(batch)]
        self._pending_start = end
        return start, batch, [range(low, min(high, end)) for low, high in removed], removed, end

    def _put_back(self, start: int, batch: list[Entry], removed: list[tuple[int, int]]) -> None:
        """Undo ``_chunk_of_memory`` after a failed transaction (``_lock`` held)."""
        end = start + len(batch)
        self._pending[:0] = batch
        self._pending_start = start
        self._done = sorted(
            [d for d in self._done if not (d[0] == end and any(r[1] > end for r in removed))]
            + removed
        )

    def _write(self, due: int) -> None:
        """One transaction: settled rows out, memory in, our lease renewed."""
        conn = self._conn
        assert conn is not None
        with self._lock:
            head = self._head
            start, batch, skip, removed, _ = self._chunk_of_memory(due, self._chunk_now)
        size = sum(map(len, batch)) + ROW_OVERHEAD * len(batch)
        deletes, self._deletes = first_rows(self._deletes, self._delete_rows)
        releases, self._releases = self._releases, []
        try:
            conn.execute("BEGIN IMMEDIATE")
            delete_ranges(conn, self._token, deletes)
            if batch:
                insert_rows(conn, self._token, start, batch, skip)
            if releases:
                # Whatever we still own is for the next process: giving up the lease
                # hands over every row at once (rows written later included).
                self._given_up = True
            renew(conn, self._token, released=self._given_up)
            conn.execute("COMMIT")
        except BaseException:
            with self._lock:
                self._put_back(start, batch, removed)
            self._deletes[:0] = deletes
            self._releases[:0] = releases
            raise
        self._remember(start, batch, head, skip)
        self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL
        try:
            used = used_bytes(conn, self._page)
        except sqlite3.Error:
            used = self._bound.used
        with self._lock:
            self._bound.written(size, used)
        if releases:
            self._orphans_possible = True

    def _remember(self, start: int, batch: list[Entry], head: int, skip: list[range]) -> None:
        """Keep who waits on entries just written and not yet taken (see ``_tracked``)."""
        if all_bytes(batch):
            return
        for i, entry in enumerate(batch):
            seq = start + i
            if type(entry) is Tracked and seq >= head and not any(seq in gap for gap in skip):
                if entry.callback is not None:
                    self._tracked[seq] = entry
                elif entry.future is not None:
                    self._futures[seq] = entry.future

    def _adopt(self) -> None:
        """Take over the rows of owners that are gone: theirs are ours to send now."""
        conn = self._conn
        assert conn is not None
        self._next_adopt = time.monotonic() + ADOPT_INTERVAL
        conn.execute("BEGIN IMMEDIATE")
        reserved: tuple[int, list[Entry], list[tuple[int, int]]] | None = None
        ids: list[int] = []
        weight = 0
        try:
            dead = self._watch.dead(read_owners(conn, self._token), time.monotonic())
            conn.executemany("DELETE FROM owners WHERE token = ?", [(t,) for t in dead])
            released = conn.execute("SELECT 1 FROM messages WHERE owner = 0 LIMIT 1").fetchone()
            if not (dead or released or self._orphans_possible):
                conn.execute("COMMIT")
                return
            for row_id, length in conn.execute(
                "SELECT id, length(data) FROM messages "
                "WHERE owner NOT IN (SELECT token FROM owners) ORDER BY id LIMIT ?",
                (ADOPT_BATCH,),
            ):
                ids.append(row_id)
                weight += length + ROW_OVERHEAD
                if weight >= self._chunk:
                    break  # a rewrite this size fits the WAL; the next look goes on
            if ids:
                # The adopted rows get the next numbers, after everything accepted so
                # far: memory is written in this transaction too, so numbers stay
                # consecutive (settled ones skipped).
                with self._lock:
                    head = self._head
                    start, batch, skip, removed, base = self._chunk_of_memory(2**62, 2**62)
                    self._pending_start = base + len(ids)
                reserved = (start, batch, removed)
                insert_rows(conn, self._token, start, batch, skip)
                conn.executemany(
                    "UPDATE messages SET owner = ?, seq = ? WHERE id = ?",
                    [(self._token, base + i, row_id) for i, row_id in enumerate(ids)],
                )
            conn.execute("COMMIT")
        except BaseException:
            if reserved is not None:
                with self._lock:
                    self._put_back(*reserved)
            raise
        if reserved is not None:
            start, batch, _ = reserved
            self._remember(start, batch, head, skip)
            with self._lock:
                self._bound.release(sum(map(len, batch)) + ROW_OVERHEAD * len(batch))
        self._orphans_possible = len(ids) >= ADOPT_BATCH or weight >= self._chunk
        if ids:
            self._measure()
            self._wake_sender()

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
