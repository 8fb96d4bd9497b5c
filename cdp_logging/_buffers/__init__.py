"""The buffers between the logging call and the sender, behind one interface (``base``).

``memory`` (the default), ``sqlite`` (a file that survives the process) and ``redis``
(a stream shared by a fleet) are chosen by the ``buffer`` option through
``make_buffer``; the sender sees only the interface. A buffer imports nothing from the
delivery layer: what it cannot settle itself it hands back through the callbacks the
sender gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._core.buffer_option import redis_buffer
from .base import Buffer, Gone
from .memory import MemoryBuffer

if TYPE_CHECKING:
    from .._core.options import Options

__all__ = ["BufferFactory", "make_buffer"]

# What the sender is given: called once per process (at construction and in a forked
# child, which must not share the parent's buffer), with the two callbacks below.
BufferFactory = Callable[[Callable[[], object], Gone], Buffer]


def make_buffer(options: Options, wake: Callable[[], object], gone: Gone) -> Buffer:
    """The buffer *options* ask for. *wake* asks the sender to send now (rows were
    taken over from a dead process); *gone* hands back numbers this process will never
    send itself (the file broke, or another process took them over), with their
    waiters, for the delivery layer to settle: a buffer settles no call itself."""
    path = options.buffer_path
    if path is not None:
        from .sqlite import SQLiteQueue  # sqlite3 is imported only by those who use it

        return SQLiteQueue(
            path, options.max_buffer_bytes, options.max_queue_size, wake=wake, gone=gone
        )
    stream = redis_buffer(options.buffer)
    if stream is not None:
        from .redis import RedisStreamBuffer  # redis-py is imported only by those who use it

        return RedisStreamBuffer(stream, options.max_queue_size, options.host)
    return MemoryBuffer(options.max_queue_size, options.max_queue_bytes)
