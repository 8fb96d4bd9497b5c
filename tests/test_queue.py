"""MemoryBuffer: bounded, never blocking, batches bounded by count and bytes."""

from __future__ import annotations

from cdp_logging._buffers.base import CLOSED, FULL
from cdp_logging._buffers.memory import MemoryBuffer


class TestMemoryQueue:
    def test_full_queue_refuses_new(self) -> None:
        """Past max_size a put is refused (FULL) and the queue keeps what it had."""
        queue = MemoryBuffer(2)

        assert [queue.put(b"a"), queue.put(b"b"), queue.put(b"c")] == [1, 2, FULL]
        assert 2 == len(queue)

    def test_take_is_capped_by_count(self) -> None:
        """A take returns at most max_count entries, oldest first."""
        queue = MemoryBuffer(10_000)
        for i in range(3000):
            queue.put(b"%d" % i)

        first, batch = queue.take(2500, 500_000)

        assert (0, 2500, b"0") == (first, len(batch), batch[0])
        assert 500 == len(queue)

    def test_take_is_capped_by_bytes(self) -> None:
        """A take stops before the joined entries would pass max_bytes."""
        queue = MemoryBuffer(100)
        for _ in range(10):
            queue.put(b"x" * 99)

        _, batch = queue.take(100, 1000)  # each costs 100 with its comma

        assert 10 == len(batch)
        queue2 = MemoryBuffer(100)
        for _ in range(10):
            queue2.put(b"x" * 99)
        assert 9 == len(queue2.take(100, 999)[1])

    def test_sequence_numbers_and_before(self) -> None:
        """Entries are numbered in order; `before` stops a take at a sequence number."""
        queue = MemoryBuffer(100)
        for i in range(10):
            queue.put(b"%d" % i)

        assert (0, [b"0", b"1", b"2"]) == queue.take(100, 10_000, before=3)
        assert (3, [b"3"]) == queue.take(1, 10_000)
        assert 10 == queue.accepted

    def test_closed_queue_refuses_puts_but_drains(self) -> None:
        """After close a put is refused (CLOSED); what was queued can still be taken."""
        queue = MemoryBuffer(10)
        queue.put(b"a")
        queue.close()

        assert queue.put(b"b") == CLOSED
        assert [b"a"] == queue.take(10, 100)[1]
