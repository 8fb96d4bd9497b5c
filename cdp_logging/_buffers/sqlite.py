"""An SQLite buffer that survives the process: ``buffer="sqlite:PATH"``.

The shape, and why:

* **The caller only appends to memory.** ``put`` is the memory queue's ``put`` plus one
  size check: a list append under a short lock. A small writer thread moves what is in
  memory into the file every ``SPOOL_INTERVAL`` (0.2 s), sooner in a burst. It is a
  thread of its own, not the sender's job, because the sender can sit in one HTTP
  request for ``timeout`` seconds (10 by default) and "accepted more than 0.5 s before
  a SIGKILL survives it" needs a write at least every 0.5 s whatever the network does.
* **The sender sends only from the file.** ``take`` first writes what memory holds,
  then claims rows; a row is deleted when its batch settles (the server took it, or it
  failed for good and was reported: ``settle(final=True)``), or handed back to whoever
  opens the file next when close() ran out of time (``final=False``). A process killed
  mid-request leaves its claimed rows in the file, so the next one resends them with
  the same messageIds: a duplicate, never a loss.
* **Ownership is per process, not per row.** Every row names its owner (a random token
  per client and process); each owner has a row in ``owners`` with a lease that the
  writer renews every second (``LEASE_SECONDS`` = 5). A live process never takes rows
  of another live owner, so two live processes never both send one row. Rows of an
  owner whose lease ran out, or whose pid is gone from this host (checked with
  ``kill(pid, 0)``, so a restart does not wait for the lease), or that handed its
  lease back at close, are adopted by the next writer that looks (every
  ``ADOPT_INTERVAL`` s): within ~7 s of a death, the contract says 10.
* **Bounded by the file's real size.** The decision to refuse (``queue_full``) is made
  in ``put``, from the pages the database uses (``page_count - freelist_count``,
  measured after every write) plus an estimate for what still waits in memory; it
  refuses a little before the bound (``SOFT_FILL``). ``PRAGMA max_page_count`` makes
  the bound hard: SQLite itself refuses to grow the file past it
  (https://www.sqlite.org/pragma.html#pragma_max_page_count). The WAL file is part of
  the bound: a quarter of ``max_buffer_bytes`` is set aside for it, with
  ``wal_autocheckpoint`` and ``journal_size_limit`` keeping it inside
  (https://www.sqlite.org/wal.html#avoiding_excessively_large_wal_files).
* **WAL with synchronous=NORMAL.** A commit reaches the OS without an fsync; the fsync
  happens at checkpoints. So a killed process loses nothing it committed, and the
  database stays consistent through a power loss, but the commits since the last
  checkpoint may roll back then ("WAL mode does lose durability",
  https://www.sqlite.org/pragma.html#pragma_synchronous). FULL would fsync five times
  a second per process for a log of analytics events; the README says how to choose.
* **Nothing here raises into the app.** A file that cannot be created, is not an
  SQLite file, is corrupt, is locked by another program past ``BUSY_TIMEOUT_MS``, or
  is on a full disk gets one stderr line naming the path and the fix; the queue then
  keeps messages in memory (bounded by ``max_queue_size``) and the sender goes on
  delivering from there, as with ``buffer="memory"``. Locked and full are retried.
* **Fork.** A connection must not cross a fork
  (https://www.sqlite.org/howtocorrupt.html#_carrying_an_open_database_connection_across_a_fork_):
  besides the connection itself, SQLite keeps per-file state for the process (its view
  of the locks, the WAL index mapping) that a child would inherit and a new connection
  of the child's would reuse. So a fork hook closes every queue's connection just
  before the fork, with the queue's lock held so no thread is inside SQLite, and each
  side opens a new one on its next use; the child's sender builds a new queue anyway.

Sequence numbers are this process's: the rows it adopts get the next ones, so
``flush()`` (which waits for every sequence number below ``accepted``) also waits for
what it took over. If another process adopted our rows (we were stopped past the
lease), the queue tells the sender those numbers are settled (``gone``).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import sqlite3
import threading
import time
import weakref
from bisect import bisect_right
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from itertools import accumulate, repeat
from itertools import count as numbered
from operator import itemgetter
from typing import Any, Final

from .._core.errors import KEPT, DeliveryError
from .._core.report import warn
from .._delivery.settle import resolve_call
from .base import CLOSED, FULL, Entry, Local, Tracked, entry_data

__all__ = [
    "ADOPT_INTERVAL",
    "LEASE_SECONDS",
    "SPOOL_INTERVAL",
    "SQLiteQueue",
]

SPOOL_INTERVAL: Final = 0.2
# In a burst the writer is woken this many entries in, not only every interval.
SPOOL_COUNT: Final = 2_000
HEARTBEAT_INTERVAL: Final = 1.0
LEASE_SECONDS: Final = 5.0
ADOPT_INTERVAL: Final = 1.0
# How long one statement waits for another process's write lock before it counts as
# "locked" (https://www.sqlite.org/c3ref/busy_timeout.html). Only the writer and sender
# threads ever wait; the caller never touches the file.
BUSY_TIMEOUT_MS: Final = 2_000
RETRY_SECONDS: Final = 2.0
PROBLEM_INTERVAL: Final = 60.0
# Bytes a row costs beyond its payload in the table and its index (rowid, owner, seq,
# cell pointers), used only to estimate what memory will need once written.
ROW_OVERHEAD: Final = 48
SOFT_FILL: Final = 0.9
ADOPT_BATCH: Final = 20_000
APPLICATION_ID: Final = 0x63647042  # "cdpB": a file of ours, not some other database

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    owner INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_owner ON messages (owner, seq);
CREATE TABLE IF NOT EXISTS owners (
    token INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    until REAL NOT NULL
);
"""

_HOST: Final = socket.gethostname()

# Every connection opened, kept referenced for the life of the process: should one
# cross a fork after all (the fork hook could not take its queue's lock in time), the
# child must neither use nor close it.
_CONNECTIONS: list[sqlite3.Connection] = []
# Every queue of this process, for the fork hook.
_QUEUES: weakref.WeakSet[SQLiteQueue] = weakref.WeakSet()
_HELD_AT_FORK: list[threading.Lock] = []


def _before_fork() -> None:
    """Close every connection, each with its queue's lock held through the fork."""
    for queue in sorted(_QUEUES, key=id):
        # Bounded: a thread inside SQLite holds the lock for at most a busy timeout.
        if queue._db_lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000 + 1):
            _HELD_AT_FORK.append(queue._db_lock)
            queue._close_for_fork()


def _after_fork() -> None:
    while _HELD_AT_FORK:
        _HELD_AT_FORK.pop().release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # EPERM: alive, another user's
    return False


def _kind(error: BaseException) -> str:
    """locked, full, corrupt, unwritable or other: what the stderr line says and whether
    to retry. 3.11+ names the result code; 3.10 only has the message."""
    name = str(getattr(error, "sqlite_errorname", "") or "")
    text = str(error).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return "locked"
    if name.startswith("SQLITE_FULL") or "full" in text:
        return "full"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text:
        return "corrupt"
    if "not a database" in text or "not a cdp_logging buffer" in text:
        return "corrupt"
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
        return "unwritable"
    if isinstance(error, OSError) or "unable to open" in text or "readonly" in text:
        return "unwritable"
    return "other"


_ADVICE: Final = {
    "locked": (
        "another program holds a lock on it; messages wait in memory (max_queue_size) "
        "and are sent from there, and the file is tried again every few seconds"
    ),
    "full": (
        "the disk (or max_buffer_bytes) is full; messages wait in memory (max_queue_size) "
        "and are sent from there until the file has room again"
    ),
    "corrupt": (
        "it is not a readable cdp_logging buffer; move it aside (or delete it) so a new "
        "one is created; until then messages are kept in memory"
    ),
    "unwritable": (
        "check that its directory exists and that this user may write there; until "
        "then messages are kept in memory"
    ),
    "other": "messages are kept in memory meanwhile",
}


class SQLiteQueue(Local):
    """The ``Buffer`` of ``buffer="sqlite:PATH"``: see the module docstring."""

    def __init__(
        self,
        path: str,
        max_bytes: int,
        max_memory: int,
        *,
        wake: Callable[[], object] = lambda: None,
        gone: Callable[[int, int], object] = lambda start, end: None,
    ) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._max_memory = max_memory
        self._wake_sender = wake
        self._gone = gone
        self._lock = threading.Lock()  # the memory part: put's lock, held for a swap at most
        self._db_lock = threading.Lock()  # the connection; never taken by put
        self._start_lock = threading.Lock()
        self._pending: list[Entry] = []
        self._pending_start = 0  # sequence number of _pending[0]
        self._pending_bytes = 0
        self._head = 0  # next sequence number to take
        self._closed = False
        # Written entries someone may wait on, by seq. A callback is held here (nobody
        # else holds it); a Future only weakly: one the app dropped (every direct call
        # returns one) costs nothing while its row waits in the file.
        self._tracked: dict[int, Tracked] = {}
        self._futures: weakref.WeakValueDictionary[int, Future[dict[str, Any]]] = (
            weakref.WeakValueDictionary()
        )
        self._file_bytes = 0
        # Pages used per estimated byte (page fill, the index): learned from each write,
        # and pessimistic until the first.
        self._factor = 1.5
        wal = max_bytes // 4
        self._db_limit = max_bytes - wal
        self._wal_limit = wal
        # One transaction writes at most this much, so the WAL (checkpointed at half
        # its allowance) stays inside its quarter of the bound.
        self._chunk = max(16 * 1024, wal // 4)
        # Rows one transaction deletes at most. A delete appends every page it touches
        # to the WAL, so a settled batch of thousands deleted at once would push the
        # WAL (and file + WAL) past the bound until the next reset; in slices, the
        # automatic checkpoint runs between them. ~512 bytes a row (a small event) is
        # the pessimistic side: fewer rows per slice than pages allow.
        self._delete_rows = max(16, self._chunk // 512)
        self._budget = float(self._db_limit) * SOFT_FILL
        self._conn: sqlite3.Connection | None = None
        self._broken = False  # for good: memory only
        self._write_retry_at = 0.0  # locked or full: writes wait until then
        self._read_retry_at = 0.0
        self._open_retry_at = 0.0
        self._warned: dict[str, float] = {}  # kind -> when its line was written
        self._recovered_at = -1.0
        self._token = random.getrandbits(62) + 1
        self._writer: threading.Thread | None = None
        self._writer_retry_at = 0.0
        self._spool_now = threading.Event()
        self._given_up = False  # our lease handed back at close: nothing renews it
        self._from_memory: set[int] = set()  # starts of batches taken from memory
        self._deletes: list[tuple[int, int]] = []
        self._releases: list[tuple[int, int]] = []
        self._next_heartbeat = 0.0
        self._next_adopt = 0.0
        self._orphans_possible = True  # scan for rows nobody owns at the first look
        self._kept = False  # rows kept behind the head for a later process
        self._pid = os.getpid()
        _QUEUES.add(self)

    def _close_for_fork(self) -> None:
        """Called by the fork hook with ``_db_lock`` held: no connection crosses a fork.

        The next use opens a new one (``_open``), which renews our lease as it does."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # not reached: transactions end under the lock
            conn.close()
        with contextlib.suppress(ValueError):
            _CONNECTIONS.remove(conn)

    def __repr__(self) -> str:
        return f"<SQLiteQueue {self.path!r}>"

    # -- the caller's side: memory only ------------------------------------------------

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._pending_start + len(self._pending)

    def put(self, entry: Entry) -> int:
        with self._lock:
            if self._closed:
                return CLOSED
            count = len(self._pending)
            size = len(entry) + ROW_OVERHEAD
            if (
                count >= self._max_memory
                or self._file_bytes + (self._pending_bytes + size) * self._factor > self._budget
            ):
                return FULL
            self._pending.append(entry)
            self._pending_bytes += size
        if self._writer is None:
            self._start_writer()
        elif count + 1 == SPOOL_COUNT:
            self._spool_now.set()
        # What waits in memory, not everything in the file: the sender yields the
        # interpreter lock past half of max_queue_size, which should mean "the writer
        # lags", not "the host is down and the file holds a backlog".
        return count + 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._kept:
                # Rows kept for a later process (refused for our configuration): hand
                # the lease back now, or this process would hold them while it lives.
                self._releases.append((0, 0))
        self._spool_now.set()

    def __len__(self) -> int:
        # Rows that cannot be read right now are left out, so the sender waits for the
        # writer's wake-up instead of spinning on takes that return nothing.
        if time.monotonic() < self._read_retry_at:
            return len(self._pending)
        return self._pending_start + len(self._pending) - self._head

    # -- the writer thread -------------------------------------------------------------

    def _start_writer(self) -> None:
        with self._start_lock:
            if self._writer is not None or time.monotonic() < self._writer_retry_at:
                return
            thread = threading.Thread(
                target=self._run, name=f"cdp_logging-buffer-{id(self):x}", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:
                # At exit on 3.12.0-3.12.2, or out of threads: take() writes instead.
                self._writer_retry_at = time.monotonic() + RETRY_SECONDS
                return
            self._writer = thread

    def _run(self) -> None:
        while True:
            self._spool_now.wait(SPOOL_INTERVAL)
            self._spool_now.clear()
            if self._pid != os.getpid():
                return
            with self._db_lock:
                try:
                    self._maintain()
                except Exception as error:  # noqa: BLE001 - a bug here must not stop the writes
                    warn(f"buffer {self.path}: writer error {type(error).__name__}: {error}")
                if self._finished():
                    return

    def _finished(self) -> bool:
        """Closed and nothing of ours left to keep a lease for: then leave the file."""
        with self._lock:
            if not self._closed or self._pending or self._deletes or self._releases:
                return False
        conn = self._conn
        if self._given_up or conn is None:
            return True
        try:
            # The sender may still be delivering within close()'s deadline: the lease
            # is renewed until no row is ours, so nobody takes those rows meanwhile.
            if conn.execute(
                "SELECT 1 FROM messages WHERE owner = ? LIMIT 1", (self._token,)
            ).fetchone():
                return False
            conn.execute("DELETE FROM owners WHERE token = ?", (self._token,))
        except sqlite3.Error:
            return False  # locked: look again at the next tick
        return True

    def _maintain(self) -> None:
        """Write what memory holds, settle what waits, renew our lease, adopt orphans."""
        if not self._open():
            return
        now = time.monotonic()
        if now >= self._write_retry_at:
            if self._pending or self._deletes or self._releases or now >= self._next_heartbeat:
                self._spool()
            if not self._closed and time.monotonic() >= self._next_adopt:
                self._guarded(self._adopt)
        if now >= self._read_retry_at > 0:
            self._read_retry_at = 0.0
            self._wake_sender()

    # -- the connection ----------------------------------------------------------------

    def _open(self) -> bool:
        """The connection, opened on first use in this process; False: memory only now."""
        if self._conn is not None:
            return True
        if self._broken or time.monotonic() < self._open_retry_at:
            return False
        conn = None
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so the write lock is
            # taken (and waited for, with busy_timeout) at the start of a transaction, not
            # at its first write, where WAL answers SQLITE_BUSY at once without waiting
            # (https://www.sqlite.org/lang_transaction.html, "BEGIN IMMEDIATE").
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            _CONNECTIONS.append(conn)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL mode here (journal_mode={mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            page = int(conn.execute("PRAGMA page_size").fetchone()[0])
            conn.execute(f"PRAGMA max_page_count={max(16, self._db_limit // page)}")
            conn.execute(f"PRAGMA wal_autocheckpoint={max(4, self._wal_limit // page // 2)}")
            conn.execute(f"PRAGMA journal_size_limit={self._wal_limit}")
            conn.execute("BEGIN IMMEDIATE")
            app = int(conn.execute("PRAGMA application_id").fetchone()[0])
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app != APPLICATION_ID and tables:
                conn.execute("ROLLBACK")
                raise sqlite3.DatabaseError("not a cdp_logging buffer (another program's database)")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO owners VALUES (?, ?, ?, ?)",
                (self._token, _HOST, os.getpid(), time.time() + LEASE_SECONDS),
            )
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as error:
            kind = _kind(error)
            self._problem(kind, error)
            if kind in ("locked", "full", "other"):
                self._open_retry_at = time.monotonic() + RETRY_SECONDS
            else:
                self._break()
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
                _CONNECTIONS.remove(conn)
            return False
        self._conn = conn
        self._page_size = page
        self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL
        self._measure()
        self._recovered()
        return True

    def _problem(self, kind: str, error: BaseException) -> None:
        """One stderr line per kind of trouble (a minute apart at most), naming the file
        and the fix."""
        now = time.monotonic()
        if now - self._warned.get(kind, -PROBLEM_INTERVAL) < PROBLEM_INTERVAL:
            return
        self._warned[kind] = now
        warn(f"buffer {self.path}: {error} ({kind}): {_ADVICE[kind]}")

    def _recovered(self) -> None:
        if any(at > self._recovered_at for at in self._warned.values()):
            warn(f"buffer {self.path}: usable again; messages are written to it")
        self._recovered_at = time.monotonic()

    def _break(self) -> None:
        """For good: memory only. Rows we had in the file stay there, for a later process
        (or ``cdp-logging drain``); this one no longer waits for them."""
        self._broken = True
        self._budget = float("inf")
        with self._lock:
            start, end = self._head, self._pending_start
            self._head = end
        if end > start:
            self._gone(start, end)
        self._tell_waiters(
            range(start, end),
            f"kept in {self.path}, which this process can no longer use; the next process "
            f"that opens it, or cdp-logging drain {self.path}, sends it",
        )
        self._tracked.clear()
        self._futures.clear()

    def _tell_waiters(self, seqs: range, reason: str) -> None:
        """End the Future and callback of every message in *seqs* that has one, as KEPT:
        another process delivers it, and an application waiting on ``result()`` with no
        timeout must not wait for this one forever."""
        if not (self._tracked or self._futures):
            return
        error = DeliveryError(KEPT, reason)
        for seq in seqs:
            tracked = self._tracked.pop(seq, None)
            future = tracked.future if tracked is not None else self._futures.pop(seq, None)
            callback = tracked.callback if tracked is not None else None
            if future is not None or callback is not None:
                resolve_call(future, callback, error, {}, str)

    def _guarded(self, work: Callable[[], object]) -> bool:
        """Run one write; on failure roll back, say why once, and retry later or give up."""
        conn = self._conn
        assert conn is not None
        try:
            work()
        except (sqlite3.Error, OSError) as error:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            kind = _kind(error)
            self._measure()
            if kind == "full" and self._file_bytes >= self._budget * 0.8:
                # Our own bound (max_page_count), not the disk: the estimate was short.
                # Refuse new messages until deletes make room; no disk warning.
                self._factor *= 1.1
                self._file_bytes = max(self._file_bytes, int(self._budget))
                self._write_retry_at = time.monotonic() + SPOOL_INTERVAL
                return False
            self._problem(kind, error)
            if kind in ("corrupt", "unwritable"):
                self._break()
            else:
                self._write_retry_at = time.monotonic() + RETRY_SECONDS
            return False
        if self._write_retry_at:
            self._write_retry_at = 0.0
            self._recovered()
        return True

    def _measure(self) -> None:
        """The bytes the database file really uses (free pages are reused, not grown)."""
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            self._file_bytes = (int(pages) - int(free)) * self._page_size

    # -- writes ------------------------------------------------------------------------

    def _write(self) -> None:
        """One transaction: settled rows out, memory in, our lease renewed."""
        conn = self._conn
        assert conn is not None
        with self._lock:
            pending, start = self._pending, self._pending_start
            count = _prefix(pending, self._chunk)
            batch = pending[:count]
            del pending[:count]
            size = sum(len(e) + ROW_OVERHEAD for e in batch)
            self._pending_bytes -= size
            self._pending_start += count
        deletes, self._deletes = _first_rows(self._deletes, self._delete_rows)
        releases, self._releases = self._releases, []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for low, high in deletes:
                conn.execute(
                    "DELETE FROM messages WHERE owner = ? AND seq >= ? AND seq < ?",
                    (self._token, low, high),
                )
            if batch:
                token = self._token
                conn.executemany(
                    "INSERT INTO messages (owner, seq, data) VALUES (?, ?, ?)",
                    _rows(token, start, batch),
                )
            if releases:
                # close() ran out of time: whatever we still own is for the next process.
                # Giving up the lease hands over every row at once; rewriting each row's
                # owner would cost a page write per few rows, past the close deadline.
                self._given_up = True
            until = 0.0 if self._given_up else time.time() + LEASE_SECONDS
            renewed = conn.execute(
                "UPDATE owners SET until = ? WHERE token = ?", (until, self._token)
            ).rowcount
            if not renewed and not self._given_up:
                # Someone took us for dead (we were stopped past the lease) and adopted
                # our rows; take() notices the gap. We are alive again: say so.
                conn.execute(
                    "INSERT INTO owners VALUES (?, ?, ?, ?)",
                    (self._token, _HOST, os.getpid(), time.time() + LEASE_SECONDS),
                )
            conn.execute("COMMIT")
        except BaseException:
            with self._lock:  # put it all back as it was, for the next try
                self._pending[:0] = batch
                self._pending_start = start
                self._pending_bytes += size
            self._deletes[:0] = deletes
            self._releases[:0] = releases
            raise
        self._remember(start, batch)
        self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL
        if deletes or releases or batch:
            before = self._file_bytes
            self._measure()
            if batch and not deletes and not releases and size >= 16 * 1024:
                grown = (self._file_bytes - before) / size
                if grown > 0:  # 0 when the rows went into free pages
                    self._factor = max(1.0, 0.5 * self._factor + 0.5 * grown)
        if releases:
            self._orphans_possible = True

    def _spool(self) -> bool:
        """Write memory out, one chunk per transaction; False if the file refused."""
        for _ in range(64):  # bounded: puts may go on meanwhile; the next tick continues
            if not self._guarded(self._write):
                return False
            if not self._pending and not self._deletes:
                break
        return True

    def _remember(self, start: int, batch: list[Entry]) -> None:
        """Keep who waits on the entries just written (see ``_tracked``)."""
        if all_bytes(batch):
            return
        for i, entry in enumerate(batch):
            if type(entry) is Tracked:
                if entry.callback is not None:
                    self._tracked[start + i] = entry
                elif entry.future is not None:
                    self._futures[start + i] = entry.future

    def _adopt(self) -> None:
        """Take over the rows of owners that are gone: theirs are ours to send now."""
        conn = self._conn
        assert conn is not None
        self._next_adopt = time.monotonic() + ADOPT_INTERVAL
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        reserved: tuple[int, list[Entry], int] | None = None
        ids: list[int] = []
        weight = 0
        try:
            dead = [
                token
                for token, host, pid, until in conn.execute(
                    "SELECT token, host, pid, until FROM owners WHERE token != ?", (self._token,)
                )
                if until < now or (host == _HOST and pid != os.getpid() and _pid_gone(pid))
            ]
            conn.executemany("DELETE FROM owners WHERE token = ?", [(t,) for t in dead])
            released = conn.execute("SELECT 1 FROM messages WHERE owner = 0 LIMIT 1").fetchone()
            if not (dead or released or self._orphans_possible):
                conn.execute("COMMIT")
                return
            ids = []
            weight = 0
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
                # The adopted rows get the next sequence numbers, after everything
                # accepted so far: memory's entries are written in this transaction
                # too, so the numbers stay consecutive.
                with self._lock:
                    batch, start = self._pending, self._pending_start
                    size = self._pending_bytes
                    base = start + len(batch)
                    self._pending, self._pending_bytes = [], 0
                    self._pending_start = base + len(ids)
                reserved = (start, batch, size)
                token = self._token
                conn.executemany(
                    "INSERT INTO messages (owner, seq, data) VALUES (?, ?, ?)",
                    _rows(token, start, batch),
                )
                conn.executemany(
                    "UPDATE messages SET owner = ?, seq = ? WHERE id = ?",
                    [(token, base + i, row_id) for i, row_id in enumerate(ids)],
                )
            conn.execute("COMMIT")
        except BaseException:
            if reserved is not None:
                # As it was: nobody took anything meanwhile (we hold the connection's
                # lock), and puts since then only appended to memory.
                start, batch, size = reserved
                with self._lock:
                    self._pending[:0] = batch
                    self._pending_start = start
                    self._pending_bytes += size
            raise
        if reserved is not None:
            self._remember(reserved[0], reserved[1])
        self._orphans_possible = len(ids) >= ADOPT_BATCH or weight >= self._chunk
        if ids:
            self._measure()
            self._wake_sender()

    # -- the sender's side -------------------------------------------------------------

    def take(
        self, max_count: int, max_bytes: int, before: int | None = None
    ) -> tuple[int, list[Entry]]:
        with self._db_lock:
            if self._pid != os.getpid():
                return self._head, []  # a stale copy in a forked child: never used
            now = time.monotonic()
            writable = self._open() and now >= self._write_retry_at
            due = now >= self._next_heartbeat and not self._given_up
            if writable and (self._pending or due):
                writable = self._spool()
            with self._lock:
                limit = self._pending_start + len(self._pending)
            if before is not None:
                limit = min(limit, before)
            entries: list[Entry] = []
            if self._head < self._pending_start and self._conn is not None:
                entries = self._read(min(max_count, limit - self._head), limit)
            first = self._head
            if not entries and self._head >= self._pending_start and not writable:
                with self._lock:  # the file cannot take them: send from memory
                    count = min(max_count, limit - self._head, len(self._pending))
                    entries = self._pending[: max(count, 0)]
            if not entries:
                return first, []
            entries = _fit(entries, max_bytes)
            with self._lock:
                if self._head >= self._pending_start:  # from memory
                    self._from_memory.add(first)
                    del self._pending[: len(entries)]
                    self._pending_bytes -= sum(len(e) + ROW_OVERHEAD for e in entries)
                    self._pending_start += len(entries)
                self._head += len(entries)
            return first, entries

    def _read(self, count: int, limit: int) -> list[Entry]:
        """Our next rows from the file, from the head on, consecutive."""
        conn = self._conn
        assert conn is not None
        if count <= 0 or time.monotonic() < self._read_retry_at:
            return []
        try:
            rows = conn.execute(
                "SELECT seq, data FROM messages WHERE owner = ? AND seq >= ? AND seq < ? "
                "ORDER BY seq LIMIT ?",
                (self._token, self._head, min(limit, self._pending_start), count),
            ).fetchall()
        except sqlite3.Error as error:
            kind = _kind(error)
            self._problem(kind, error)
            if kind in ("corrupt", "unwritable"):
                self._break()
            else:
                self._read_retry_at = time.monotonic() + RETRY_SECONDS
            return []
        expected = self._head
        if not rows or rows[0][0] != expected:
            # Another process took our rows over (we were stopped past the lease): they
            # are its to send; for us they are settled.
            upto = rows[0][0] if rows else min(limit, self._pending_start)
            self._lost(expected, upto)
            if not rows:
                return []
        head = self._head
        if rows[-1][0] != head + len(rows) - 1:  # a gap: take up to it; the next take settles it
            count = next(i for i, row in enumerate(rows) if row[0] != head + i)
            rows = rows[:count]
        # Per-row work in C (itemgetter, map): this runs while the app logs, and
        # every Python-level step here would take the interpreter lock from it.
        entries: list[Entry] = list(map(_DATA, rows))
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
        self._tell_waiters(
            range(start, end),
            f"taken over by another process sharing {self.path} (this one was stopped past "
            "its lease), which sends it",
        )
        with self._lock:
            self._head = end
        self._gone(start, end)

    def settle(self, start: int, end: int, final: bool) -> str:
        """Delete rows [start, end) (*final*), or hand them to the next process; returns
        a note for the report ("" when the rows were not in the file)."""
        if self._pid != os.getpid() or self._broken:
            return ""
        if start in self._from_memory:  # sent from memory while the file was unusable
            self._from_memory.discard(start)
            return ""
        note = self.kept_note()
        if not final and self._given_up:
            return note  # the lease is already handed back: nothing to write
        if not final and not self._closed:
            # Refused for our configuration while running: the rows stay ours, behind
            # the head (so this process does not send them again), and go to whichever
            # process opens the file once this client closes or this process ends.
            self._kept = True
            return note
        with self._db_lock:
            (self._deletes if final else self._releases).append((start, end))
            if self._conn is not None and time.monotonic() >= self._write_retry_at:
                # Slice by slice (see _delete_rows), so the rows are gone when the batch
                # is settled; bounded, the writer's next tick takes what is left.
                for _ in range(64):
                    if not self._guarded(self._write) or not self._deletes:
                        break
        return "" if final else note

    def kept_note(self) -> str:
        return f"; kept in {self.path}: the next process that opens it sends them"

    # -- for cdp-logging drain and tests ------------------------------------------------

    def adopt_now(self) -> bool:
        """Take over, now, what owners that are gone left; False if the file is unusable."""
        with self._db_lock:
            if not self._open():
                return False
            self._orphans_possible = True
            adopted = self._guarded(self._adopt)
        self._start_writer()  # keeps our lease while the rows are sent
        return adopted

    def adopt_now_pending(self) -> bool:
        """Whether the last adoption stopped at ADOPT_BATCH rows (more may be waiting)."""
        return self._orphans_possible

    def remaining(self) -> tuple[int, int]:
        """Rows left in the file: (nobody alive owns them, a live process owns them)."""
        with self._db_lock:
            if self._conn is None:
                return (0, 0) if not self._broken else (-1, 0)
            now = time.time()
            try:
                live = [
                    token
                    for token, host, pid, until in self._conn.execute(
                        "SELECT token, host, pid, until FROM owners WHERE token != ?",
                        (self._token,),
                    )
                    if until >= now and not (host == _HOST and _pid_gone(pid))
                ]
                marks = ",".join("?" * len(live)) or "NULL"
                mine = self._conn.execute(
                    f"SELECT count(*) FROM messages WHERE owner IN ({marks})",  # noqa: S608 - only ?s
                    live,
                ).fetchone()[0]
                total = self._conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            except sqlite3.Error:
                return -1, 0
            return int(total) - int(mine), int(mine)

    def rows(self) -> int:
        """Rows in the file, whoever owns them; -1 when it cannot be read."""
        with self._db_lock:
            if self._conn is None:
                return -1
            try:
                return int(self._conn.execute("SELECT count(*) FROM messages").fetchone()[0])
            except sqlite3.Error:
                return -1


_DATA: Final = itemgetter(1)


def all_bytes(entries: list[Entry]) -> bool:
    """Whether no entry is Tracked (the logging case), checked in C."""
    return Tracked not in map(type, entries)


def _first_rows(
    ranges: list[tuple[int, int]], rows: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The first *rows* sequence numbers of *ranges* (each [low, high)), and the rest."""
    taken: list[tuple[int, int]] = []
    for index, (low, high) in enumerate(ranges):
        if rows <= 0:
            return taken, ranges[index:]
        cut = min(high, low + rows)
        taken.append((low, cut))
        rows -= cut - low
        if cut < high:
            return taken, [(cut, high), *ranges[index + 1 :]]
    return taken, []


def _rows(token: int, start: int, batch: list[Entry]) -> Iterator[tuple[int, int, bytes]]:
    """INSERT parameters; for bare bytes (the logging case) zipped in C, not per row in Python."""
    if all_bytes(batch):
        return zip(repeat(token), numbered(start), batch)  # type: ignore[arg-type]
    return zip(repeat(token), numbered(start), map(entry_data, batch))


def _prefix(entries: list[Entry], max_bytes: int) -> int:
    """How many entries from the front fit one write of *max_bytes* (at least one)."""
    if not entries:
        return 0
    ends = list(accumulate(len(e) + ROW_OVERHEAD for e in entries))
    return max(1, bisect_right(ends, max_bytes))


def _fit(entries: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix whose comma-joined size fits *max_bytes* (at least one)."""
    ends = list(accumulate(map(len, entries)))
    if ends[-1] + len(entries) <= max_bytes:
        return entries
    fits = bisect_right(range(len(entries)), max_bytes, key=lambda i: ends[i] + i + 1)
    return entries[: max(fits, 1)]
