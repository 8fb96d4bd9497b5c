"""The writer's work: memory into the file, our lease renewed, dead owners' rows taken.

Why a module of its own: this is the only code that writes rows, and the rules that
keep "accepted more than 0.5 s before a SIGKILL survives it" true live here. Each tick
(``writer.TICK``) commits every message still unsettled ``WRITE_AGE`` after it was
accepted, whether the sender has taken it or not (a batch in flight may never be
answered), and leaves out what settled meanwhile: a batch the server accepted at once
never touches the file. In a burst (``SPOOL_COUNT`` untaken), or when closing, it
commits everything. One transaction writes at most a chunk, so the WAL stays inside
its share of the bound; at the bound the chunk is halved until what fits is in.

Rows of a dead owner get this process's next numbers, after everything accepted so far
(memory is written in the same transaction), so the numbers stay consecutive and
``flush()`` waits for them.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Final

from ..base import Entry
from .connection import Connection
from .lease import ADOPT_INTERVAL, HEARTBEAT_INTERVAL, read_owners, renew
from .state import Memory
from .storage import (
    ROW_OVERHEAD,
    delete_ranges,
    first_rows,
    insert_rows,
    prefix,
    used_bytes,
    weight,
)
from .writer import SPOOL_COUNT, WRITE_AGE

__all__ = ["Spooling"]

ADOPT_BATCH: Final = 20_000


class Spooling(Connection):
    """What the writer thread runs (``_tick``), and the transactions it commits."""

    def _tick(self) -> bool:
        """One round of the writer thread; True once it is done with the file."""
        try:
            with self._file():
                if self._pid != os.getpid():
                    return True
                self._maintain()
                return self._finish()
        finally:
            self._ticked_at = time.monotonic()
            self._looked.set()

    def _maintain(self) -> None:
        """Write what is due, settle deletes, renew our lease, take over dead owners."""
        now = time.monotonic()
        with self._lock:  # never held by this thread here: see _add_reentered
            if self._reentered:
                self._add_reentered()
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
                writes = due > self._written
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
            if self._closed or accepted - max(self._head, self._written) >= SPOOL_COUNT:
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
                more = due > self._written
            if not more and not self._deletes:
                return

    def _finish(self) -> bool:
        """Closed and nothing of ours left to keep a lease for: leave the file."""
        with self._lock:
            unwritten = self._pending_start + len(self._pending) > self._written
            if not self._closed or unwritten or self._deletes or self._releases:
                return False
            # Only copies the sender has taken go: what it has not, it still takes
            # from memory, and what memory let go it reads from the file, so the file
            # stays until it has (with the lease given back, nothing else waits).
            self._evict(self._head)
            if self._head < self._pending_start:
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

    def _chunk_of_memory(self, upto: int, max_bytes: int) -> tuple[int, list[Entry], list[range]]:
        """What one transaction writes, from ``_written`` on (``_lock`` held): its first
        number, its entries, and the settled ranges among them (left out). Memory keeps
        them (see ``_evict``); ``_written`` moves past them now, so a batch settled while
        they are being written has its rows deleted after them."""
        start = self._written
        offset = start - self._pending_start
        region = self._pending[offset : offset + max(0, upto - start)]
        batch = region[: prefix(region, max_bytes)]
        end = start + len(batch)
        self._written = end
        skip = [
            range(max(low, start), min(high, end))
            for low, high in self._done
            if low < end and high > start
        ]
        return start, batch, skip

    def _put_back(self, start: int, batch: list[Entry]) -> None:
        """Undo ``_chunk_of_memory`` after a failed transaction (``_lock`` held).

        Entries of the chunk settled meanwhile left memory as written, their room in
        the file's estimate left for ``Bound.written`` to give back at the commit;
        there is no commit now, so it is given back here."""
        settled = min(start + len(batch), self._pending_start) - start
        if settled > 0:
            self._bound.release(weight(batch[:settled]))
        self._written = max(self._pending_start, start)

    def _write(self, due: int) -> None:
        """One transaction: settled rows out, memory in, our lease renewed."""
        conn = self._conn
        assert conn is not None
        with self._lock:
            start, batch, skip = self._chunk_of_memory(due, self._chunk_now)
            deletes, self._deletes = first_rows(self._deletes, self._delete_rows)
        size = weight(batch)
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
                self._put_back(start, batch)
                self._deletes[:0] = deletes
            self._releases[:0] = releases
            raise
        self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL
        try:
            used = used_bytes(conn, self._page)
        except sqlite3.Error:
            used = self._bound.used
        with self._lock:
            self._bound.written(size, used)
            # Only this thread moves _written past what is committed, and it holds
            # _db_lock: what it marked is in the file now.
            self._committed = self._written
            # What the sender has taken is in its batch: memory's copy is not needed.
            self._evict(self._head)
        if releases:
            self._orphans_possible = True

    def _adopt(self) -> None:
        """Take over the rows of owners that are gone: theirs are ours to send now."""
        conn = self._conn
        assert conn is not None
        self._next_adopt = time.monotonic() + ADOPT_INTERVAL
        conn.execute("BEGIN IMMEDIATE")
        memory: Memory | None = None
        ids: list[int] = []
        size = 0
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
                size += length + ROW_OVERHEAD
                if size >= self._chunk:
                    break  # a rewrite this size fits the WAL; the next look goes on
            if ids:
                # The adopted rows get the next numbers, after everything accepted so
                # far: memory is written in this transaction too, so numbers stay
                # consecutive (settled ones skipped). Memory lets go of all of it now;
                # puts meanwhile wait aside and are numbered once this ends: after the
                # adopted rows if it commits, after memory if it fails.
                with self._lock:
                    start, batch, skip = self._chunk_of_memory(2**62, 2**62)
                    base = start + len(batch)
                    memory = self._hand_over(base, start)
                insert_rows(conn, self._token, start, batch, skip)
                conn.executemany(
                    "UPDATE messages SET owner = ?, seq = ? WHERE id = ?",
                    [(self._token, base + i, row_id) for i, row_id in enumerate(ids)],
                )
            conn.execute("COMMIT")
        except BaseException:
            if memory is not None:
                with self._lock:
                    self._take_back(memory)
                self._wake_sender()  # what was put meanwhile can be taken now
            raise
        if memory is not None:
            with self._lock:
                self._handed_over(memory, weight(batch), len(ids))
        self._orphans_possible = len(ids) >= ADOPT_BATCH or size >= self._chunk
        if ids:
            self._measure()
            self._wake_sender()
