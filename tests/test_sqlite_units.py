"""The SQLite buffer's rules without processes or sleeping: leases and the byte bound."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdp_logging._buffers.base import FULL
from cdp_logging._buffers.sqlite import SQLiteQueue, spool
from cdp_logging._buffers.sqlite.lease import LEASE_SECONDS, Owner, Watch
from cdp_logging._buffers.sqlite.storage import ROW_OVERHEAD, SOFT_FILL, Bound, first_rows, fit


def owner(token: int, beat: int, *, until: float = 1.0, host: str = "elsewhere") -> Owner:
    return Owner(token, host, 1, until, beat)


def close_without_writer(queue: SQLiteQueue) -> None:
    """Close a buffer whose writer was never started, and drop its connection as the
    writer's last round would."""
    queue.close()
    with queue._db_lock:
        queue._drop_connection()


def leave_dead_rows(queue: SQLiteQueue, count: int) -> None:
    """Rows ``{"dead":i}`` in *queue*'s file, of an owner that is gone (token 999)."""
    with queue._db_lock:
        assert queue._open()
        assert queue._conn is not None
        queue._conn.executemany(
            "INSERT INTO messages (owner, seq, data) VALUES (?, ?, ?)",
            [(999, i, b'{"dead":%d}' % i) for i in range(count)],
        )


class TestWatch:
    def test_an_owner_whose_beat_changes_stays_alive_however_long(self) -> None:
        watch = Watch()
        for second in range(100):
            assert [] == watch.dead([owner(7, beat=second)], float(second))

    def test_an_owner_whose_beat_stops_is_dead_one_lease_after_it_was_seen_changing(
        self,
    ) -> None:
        watch = Watch()
        assert [] == watch.dead([owner(7, beat=1)], 100.0)
        assert [] == watch.dead([owner(7, beat=2)], 101.0)
        assert [] == watch.dead([owner(7, beat=2)], 101.0 + LEASE_SECONDS - 0.01)
        assert [7] == watch.dead([owner(7, beat=2)], 101.0 + LEASE_SECONDS)

    def test_a_newly_seen_owner_gets_a_full_lease_from_then(self) -> None:
        """A process that just opened the file cannot know how long a stopped owner
        has been stopped: it waits one lease, on its own clock."""
        watch = Watch()
        assert [] == watch.dead([owner(7, beat=40)], 5000.0)
        assert [7] == watch.dead([owner(7, beat=40)], 5000.0 + LEASE_SECONDS)

    def test_wall_clock_values_do_not_matter_only_their_change(self) -> None:
        """The old lease compared `until` with the wall clock: an hour's step made a
        live owner dead. An earlier version's owner renews `until` only: alive."""
        watch = Watch()
        for second in range(20):
            # until far in the past (our clock stepped forward), changing each renewal
            stale = owner(7, beat=0, until=1000.0 + second)
            assert [] == watch.dead([stale], float(second))

    def test_a_lease_handed_back_is_dead_at_once(self) -> None:
        watch = Watch()
        assert [7, 8] == watch.dead([owner(7, beat=-1), owner(8, beat=0, until=0.0)], 0.0)

    def test_a_gone_pid_on_this_host_is_dead_at_once_elsewhere_not(self) -> None:
        with open("/proc/sys/kernel/pid_max") as limit:
            no_such_pid = int(limit.read()) + 1  # kill() answers ESRCH
        here = Owner(7, "this-host", no_such_pid, 1.0, 3)
        there = Owner(8, "other-host", no_such_pid, 1.0, 3)
        assert [7] == Watch().dead([here, there], 0.0, here="this-host")

    def test_owners_gone_from_the_table_are_forgotten(self) -> None:
        watch = Watch()
        watch.dead([owner(7, beat=1)], 0.0)
        watch.dead([], 1.0)
        # Seen again: a fresh first sighting, not the old one.
        assert [] == watch.dead([owner(7, beat=1)], LEASE_SECONDS + 1)


class TestBound:
    def test_accepts_while_the_estimate_fits_the_soft_budget(self) -> None:
        bound = Bound(100_000)
        bound.factor = 1.0
        size = 1000 - ROW_OVERHEAD  # 1,000 with its overhead
        accepted = 0
        while bound.fits(size):
            bound.reserve(size)
            accepted += 1
        assert accepted == int(100_000 * SOFT_FILL) // 1000

    def test_a_chunk_being_written_still_counts_until_measured(self) -> None:
        """The defect of #24 item 2: bytes moved out of memory for a write were counted
        nowhere until the write was measured, so puts accepted them twice."""
        bound = Bound(100_000)
        bound.factor = 1.0
        for _ in range(80):
            bound.reserve(1000 - ROW_OVERHEAD)
        assert not bound.fits(10_000)  # 80,000 + 10,000 > 90,000
        # The writer takes all 80 out of memory; until its commit is measured, the
        # reservation stands: nothing more fits.
        assert not bound.fits(10_000)
        bound.written(80_000, used=80_000)
        assert 0 == bound.reserved
        assert not bound.fits(10_000)
        assert bound.fits(5_000)

    def test_settled_in_memory_releases_without_the_file(self) -> None:
        bound = Bound(100_000)
        bound.reserve(50_000)
        bound.release(50_000 + ROW_OVERHEAD)
        assert 0 == bound.reserved

    def test_learns_the_page_factor_from_large_writes_only(self) -> None:
        bound = Bound(10_000_000)
        bound.written(1000, used=5000)  # small: free pages reused, too noisy to learn
        assert 1.5 == bound.factor
        bound.written(100_000, used=5000 + 200_000)  # 2.0 pages per byte
        assert 1.75 == bound.factor
        bound.written(100_000, used=205_000 + 50_000)  # never below 1
        assert 1.0 <= bound.factor < 1.75

    def test_refused_at_the_bound_until_deletes_make_room(self) -> None:
        bound = Bound(100_000)
        bound.measured(85_000)
        bound.refused()
        assert not bound.fits(1)
        bound.measured(80_000)  # still above 0.8 of the budget
        assert not bound.fits(1)
        bound.measured(10_000)
        assert bound.fits(1)

    def test_unbounded_once_the_file_is_given_up(self) -> None:
        bound = Bound(1000)
        bound.refused()
        bound.unbounded()
        assert bound.fits(10**9)


def test_first_rows_and_fit() -> None:
    assert ([(0, 3)], [(3, 5), (8, 9)]) == first_rows([(0, 5), (8, 9)], 3)
    assert ([(0, 5), (8, 9)], []) == first_rows([(0, 5), (8, 9)], 10)
    assert [b"aa", b"bb"] == fit([b"aa", b"bb", b"cc"], 6)  # 2 + 1 + 2 + 1
    assert [b"too large"] == fit([b"too large", b"x"], 3)  # the first goes even alone


class TestMemoryAndFile:
    """The buffer itself, its writer thread not started (the sender's ``start()`` does
    that): what the sender takes from memory is settled there, without the file."""

    def test_a_batch_settled_from_memory_never_reaches_the_file(self, tmp_path: Path) -> None:
        queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 1000)
        for i in range(10):
            assert 0 < queue.put(b'{"i":%d}' % i)
        start, entries = queue.take(4, 10_000)
        assert (0, 4) == (start, len(entries))
        assert 6 == len(queue)  # untaken
        queue.settle(0, 4, True)
        assert 6 == len(queue._pending)
        assert -1 == queue.rows()  # the file was never opened
        assert not os.path.exists(tmp_path / "m.db")

    def test_out_of_order_settles_drop_from_memory_once_the_gap_closes(
        self, tmp_path: Path
    ) -> None:
        queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 1000)
        for _ in range(6):
            queue.put(b"{}")
        assert 0 == queue.take(3, 10_000)[0]
        assert 3 == queue.take(3, 10_000)[0]
        queue.settle(3, 6, True)
        assert 6 == len(queue._pending)  # 0-2 still in flight: nothing dropped yet
        queue.settle(0, 3, True)
        assert ([], 6) == (queue._pending, queue._pending_start)

    @pytest.mark.parametrize("final", [True, False])
    def test_a_batch_in_flight_is_written_and_then_kept_or_deleted(
        self, tmp_path: Path, final: bool
    ) -> None:
        """What the sender took from memory is still written (a SIGKILL mid-request
        must not lose it); a final settle deletes it, another keeps it for later."""
        queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 1000)
        for i in range(5):
            queue.put(b'{"i":%d}' % i)
        assert 5 == len(queue.take(5, 10_000)[1])
        with queue._db_lock:
            assert queue._open()
            queue._spool(queue.accepted)  # as the writer does once they are old enough
        assert 5 == queue.rows()
        note = queue.settle(0, 5, final)
        assert (0 if final else 5) == queue.rows()
        assert ("" if final else "kept in") in note
        close_without_writer(queue)

    def test_the_sender_never_waits_for_the_file_to_take_or_settle(self, tmp_path: Path) -> None:
        """Issue 24, item 1. A loop that lags the sender by SPOOL_COUNT makes the writer
        commit everything, and the sender then read it back from the file and deleted
        it, each under the file lock the writer holds (for many switch intervals while
        the loop starves it of the interpreter lock): 0.11-0.57x the memory buffer's
        share of a tight loop. Written entries stay in memory until taken, and deletes
        wait for the writer when the file is busy."""
        queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 1000)
        for i in range(5):
            queue.put(b'{"i":%d}' % i)
        with queue._db_lock:
            assert queue._open()
            queue._spool(queue.accepted)  # everything written, nothing taken
        assert 5 == queue.rows()
        done = threading.Event()
        result: list[object] = []

        def sender() -> None:
            taken = queue.take(10, 10_000)
            result.append(taken)
            result.append(queue.settle(0, len(taken[1]), True))
            done.set()

        with queue._db_lock:  # the writer inside the file, for as long as it likes
            thread = threading.Thread(target=sender)
            thread.start()
            finished = done.wait(5)
        thread.join(5)
        assert finished, "take() or settle() waited for the file lock"
        assert [(0, [b'{"i":%d}' % i for i in range(5)]), ""] == result
        assert 5 == queue.rows()  # deleted by the writer's next round...
        with queue._db_lock:
            queue._spool(0)
        assert 0 == queue.rows()  # ...which this stands in for
        assert ([], 5) == (queue._pending, queue._pending_start)
        close_without_writer(queue)

    def test_memory_lets_go_of_written_entries_when_full(self, tmp_path: Path) -> None:
        """Copies kept for the sender never cost a message: at max_queue_size, what the
        file holds leaves memory, and the sender reads it from the file."""
        queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 4)
        for i in range(4):
            assert 0 < queue.put(b'{"i":%d}' % i)
        assert FULL == queue.put(b"{}")  # nothing written yet: memory is the bound
        with queue._db_lock:
            assert queue._open()
            queue._spool(queue.accepted)
        assert 0 < queue.put(b'{"i":4}')  # the written four leave memory for it
        assert (4, 1) == (queue._pending_start, len(queue._pending))
        assert (0, [b'{"i":%d}' % i for i in range(4)]) == queue.take(10, 10_000)
        assert (4, [b'{"i":4}']) == queue.take(10, 10_000)
        close_without_writer(queue)

    def test_a_failed_adoption_puts_memory_back(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Taking over a dead owner's rows writes all of memory in the same transaction
        and numbers the rows after it. If that transaction fails, memory is as it was,
        with what was put meanwhile after it, and the next try numbers all consecutively."""
        path = str(tmp_path / "m.db")
        queue = SQLiteQueue(path, 1 << 20, 1000)
        leave_dead_rows(queue, 3)
        for i in range(4):
            queue.put(b'{"i":%d}' % i)
        with queue._db_lock:
            queue._spool(2)  # two written (memory keeps copies), two only in memory

        def locked(*_: object) -> None:
            queue.put(b'{"i":4}')  # a put while the transaction runs
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(spool, "insert_rows", locked)
        with queue._db_lock:
            queue._orphans_possible = True
            assert not queue._guarded(queue._adopt)
        assert (0, 2, 5) == (queue._pending_start, queue._written, len(queue._pending))
        monkeypatch.undo()
        with queue._db_lock:
            queue._next_adopt = 0
            queue._orphans_possible = True
            assert queue._guarded(queue._adopt)
        taken: list[bytes] = []
        while len(queue):
            taken += [bytes(entry) for entry in queue.take(100, 100_000)[1]]  # type: ignore[arg-type]
        assert [b'{"i":%d}' % i for i in range(5)] + [
            b'{"dead":%d}' % i for i in range(3)
        ] == sorted(taken[:5]) + taken[5:]
        assert 8 == queue.accepted
        close_without_writer(queue)


@contextlib.contextmanager
def writer_waiting_for_another_program(queue: SQLiteQueue) -> Iterator[None]:
    """The writer thread inside a transaction that fails: another program holds the
    file's write lock, so its BEGIN IMMEDIATE waits (a short busy timeout here) and
    then fails "database is locked". The block runs while it waits, as the caller and
    the sender do, holding neither of the writer's locks."""
    with queue._db_lock:
        assert queue._open()
        assert queue._conn is not None
        queue._conn.execute("PRAGMA busy_timeout=300")
        began = threading.Event()
        queue._conn.set_trace_callback(lambda sql: began.set() if sql.startswith("BEGIN") else None)
    other = sqlite3.connect(queue.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    due = queue.accepted

    def spool() -> None:
        with queue._db_lock:
            queue._spool(due)

    writer = threading.Thread(target=spool)
    writer.start()
    try:
        assert began.wait(5), "the writer never began its transaction"
        yield
    finally:
        writer.join(5)
        other.rollback()
        other.close()
    assert not writer.is_alive()
    with queue._db_lock:
        assert queue._conn is not None
        queue._conn.set_trace_callback(None)
        queue._write_retry_at = 0.0  # the file is free again: no need to wait 2 s


class TestTransactionsThatFail:
    """A chunk of memory is being written while the caller and the sender go on; the
    transaction then fails (another program's lock, a full disk, the bound)."""

    def test_memory_at_its_bound_keeps_a_chunk_not_yet_committed(self, tmp_path: Path) -> None:
        """put() at max_queue_size lets memory's copies of written entries go; a chunk
        whose transaction has not committed is not written: if it fails, its entries
        were in neither memory nor the file, and the sender, finding no rows, said they
        were taken over by another process."""
        gone: list[tuple[int, int, str]] = []
        queue = SQLiteQueue(
            str(tmp_path / "m.db"),
            1 << 20,
            4,
            gone=lambda start, end, waiters, reason: gone.append((start, end, reason)),
        )
        for i in range(4):
            assert 0 < queue.put(b'{"i":%d}' % i)
        with writer_waiting_for_another_program(queue):
            # The caller, memory full, meanwhile: accepted (room made) or refused.
            accepted = 5 if queue.put(b'{"i":4}') > 0 else 4
        with queue._db_lock:
            queue._spool(queue.accepted)  # the writer's next round, the file free
        taken: list[object] = []
        for _ in range(10):  # bounded: a take returns at least one entry or none
            entries = queue.take(100, 100_000)[1]
            if not entries and not len(queue):
                break
            taken += entries
        assert [b'{"i":%d}' % i for i in range(accepted)] == taken, gone
        assert accepted == queue.rows()
        close_without_writer(queue)

    def test_a_batch_settled_meanwhile_gives_its_reservation_back_once(
        self, tmp_path: Path
    ) -> None:
        """The sender settles a batch while the chunk holding it is being written: its
        entries leave memory counted as written (``Bound.written`` gives their room
        back at the commit). When the transaction fails, nothing gave it back: the
        file's estimate grew by the batch for good, and enough such failures refuse
        every message (queue_full) with an empty file and memory."""
        queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 1000)
        for i in range(5):
            queue.put(b'{"i":%d}' % i)
        assert 5 == len(queue.take(10, 10_000)[1])
        with writer_waiting_for_another_program(queue):
            assert "" == queue.settle(0, 5, True)  # delivered meanwhile
        with queue._db_lock:
            queue._spool(queue.accepted)
        assert ([], 5) == (queue._pending, queue._pending_start)
        assert 0 == queue.rows()
        assert 0 == queue._bound.reserved
        close_without_writer(queue)


class TestClose:
    def test_the_sender_still_takes_what_it_had_not_taken_once_the_lease_is_given_up(
        self, tmp_path: Path
    ) -> None:
        """A batch kept for a later process (retries ran out) makes close() give the
        lease back; the writer then leaves the file as soon as everything is written,
        and let memory's copies go, untaken ones too: the sender, still delivering
        within shutdown_timeout, could read them neither from memory nor from the file
        it had left. len() stayed above 0 and take() returned nothing: the sender
        thread spun until the process ended, and no waiter of those messages heard."""
        queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 1000)
        for i in range(3):
            queue.put(b'{"i":%d}' % i)
        assert (0, [b'{"i":0}']) == queue.take(1, 10_000)
        with queue._db_lock:
            assert queue._open()
            queue._spool(queue.accepted)
        assert "kept in" in queue.settle(0, 1, False)
        queue.close()  # hands the lease back
        assert queue._given_up
        for _ in range(5):  # the writer's rounds, until it would leave the file
            if queue._tick():
                break
        assert 2 == len(queue)
        assert (1, [b'{"i":1}', b'{"i":2}']) == queue.take(10, 10_000)
        assert "" == queue.settle(1, 3, True)
        assert 0 == len(queue)
        with queue._db_lock:
            queue._drop_connection()


def test_a_put_from_a_signal_handler_inside_a_locked_region_waits_aside(tmp_path: Path) -> None:
    """A signal handler's put, in a thread that holds the memory lock (any region: an
    adoption swapping memory, a take computing offsets), goes aside instead of waiting
    for its own thread, and is numbered once that region is over."""
    queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 1000)
    assert 0 < queue.put(b'{"i":0}')
    with queue._lock:  # the region the handler interrupted
        # A Lock would make the put below wait for this very thread forever.
        assert queue._lock.acquire(timeout=1), "the memory lock waits for its own thread"
        queue._lock.release()
        assert 0 < queue.put(b'{"i":1}')
        assert [b'{"i":0}'] == queue._pending
    assert 2 == len(queue)
    assert 2 == queue.accepted
    assert (0, [b'{"i":0}', b'{"i":1}']) == queue.take(10, 10_000)


def test_a_failed_adoption_takes_back_no_number_it_showed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an adoption's transaction runs, the adopted rows' numbers were already
    counted in ``accepted`` (puts meanwhile were numbered after them). When it failed,
    they were taken back: a flush() or close() that read ``accepted`` meanwhile waited
    for numbers that no longer existed, until its timeout (and close() then never gave
    the connection and the transport back)."""
    queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 1000)
    leave_dead_rows(queue, 3)
    for i in range(2):
        queue.put(b'{"i":%d}' % i)
    seen: list[int] = []

    def locked(*_: object) -> None:
        queue.put(b'{"i":2}')  # a put while the transaction runs
        seen.append(queue.accepted)  # what a flush() or close() started now waits for
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(spool, "insert_rows", locked)
    with queue._db_lock:
        queue._orphans_possible = True
        assert not queue._guarded(queue._adopt)
    assert queue.accepted >= seen[0]
    taken: list[object] = []
    for _ in range(10):  # bounded: a take returns at least one entry or none
        entries = queue.take(100, 100_000)[1]
        if not entries:
            break
        taken += entries
    assert [b'{"i":%d}' % i for i in range(3)] == taken


def test_memory_does_not_fill_with_settled_entries_once_the_file_broke(tmp_path: Path) -> None:
    """A batch kept for a later process while the file was busy waits in memory for the
    writer. The file then broke for good: that batch would never be written, nor leave
    memory, and every batch settled after it stayed behind it (dropped only from the
    front), until memory was full of settled messages and every call was queue_full."""
    queue = SQLiteQueue(str(tmp_path / "m.db"), 1 << 20, 6)
    for i in range(3):
        queue.put(b'{"i":%d}' % i)
    assert 3 == len(queue.take(10, 10_000)[1])
    with queue._db_lock:
        assert queue._open()
    queue._write_retry_at = time.monotonic() + 60  # the file is busy: written later
    assert "kept in" in queue.settle(0, 3, False)
    with queue._db_lock:  # then it is found corrupt
        queue._trouble(sqlite3.DatabaseError("file is not a database"), read=False)
    assert queue._broken
    for _ in range(3):  # memory only now: a few rounds of put, take, deliver
        for i in range(3):
            assert 0 < queue.put(b'{"i":%d}' % i)
        start, entries = queue.take(10, 10_000)
        assert 3 == len(entries)
        queue.settle(start, start + 3, True)
    assert [] == queue._pending
