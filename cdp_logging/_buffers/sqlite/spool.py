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

from ..base import Entry, Tracked
from .connection import Connection
from .lease import ADOPT_INTERVAL, HEARTBEAT_INTERVAL, read_owners, renew
from .storage import (
    ROW_OVERHEAD,
    all_bytes,
    delete_ranges,
    first_rows,
    insert_rows,
    prefix,
    used_bytes,
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
