"""The connection's health: opening the file, and what to do when SQLite says no.

Why a module of its own: nothing here may raise into the application. A file that
cannot be created, is not an SQLite file, is corrupt, is locked by another program past
the busy timeout, or is on a full disk gets one stderr line naming the path and the fix
(a minute apart at most); messages then wait in memory (bounded by ``max_queue_size``)
and are sent from there. Locked and full are retried; corrupt and unwritable are given
up for this process (``_break``), and what the file held stays there for a later one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Final

from ..._core.report import warn
from .lease import HEARTBEAT_INTERVAL, renew
from .state import State
from .storage import ADVICE, ROW_OVERHEAD, close_quietly, kind, open_file, rollback, used_bytes
from .writer import RETRY_SECONDS, TICK

__all__ = ["CONNECTIONS", "Connection"]

PROBLEM_INTERVAL: Final = 60.0

# Every connection opened and not yet closed by us, kept referenced: should one cross a
# fork after all (the hook could not take its buffer's lock in time), the child must
# neither use nor close it (closing would release the parent's locks).
CONNECTIONS: list[sqlite3.Connection] = []


class Connection(State):
    """Open, measure, and survive the file."""

    def _open(self) -> bool:
        """The connection, opened on first use in this process; False: memory only now."""
        if self._conn is not None:
            return True
        if self._broken or self._finished or time.monotonic() < self._open_retry_at:
            return False
        conn = None
        try:
            conn, page = open_file(self.path, self._db_limit, self._wal_limit)
            CONNECTIONS.append(conn)
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
                CONNECTIONS.remove(conn)
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
            if conn in CONNECTIONS:
                CONNECTIONS.remove(conn)

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
            self._evict(self._written)  # what the file holds stays there, for a later one
            start, end = self._head, self._pending_start
            self._head = max(self._head, end)
            self._drop_taken()
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
