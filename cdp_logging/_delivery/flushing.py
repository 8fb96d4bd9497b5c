"""``flushing``: deliver at the end of a unit of work, where exit never comes.

A serverless runtime freezes the process between invocations (the sender thread with
it), and a task runner's worker may end with ``os._exit`` or be killed between tasks.
There the end of an invocation or a task is the last safe moment to deliver, so this
flushes every client in the process then, bounded by one timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from .._core.process import flush_all

__all__ = ["aflush", "flush", "flushing"]

DEFAULT_FLUSH_TIMEOUT = 2.0


def flush(timeout: float = DEFAULT_FLUSH_TIMEOUT) -> bool:
    """Flush every cdp_logging client (every handler's, every processor's) in this process.

    Returns True once everything queued before the call is settled, False if *timeout*
    seconds (shared by all clients) passed first.

    .. versionadded:: 0.1.0
    """
    return flush_all(timeout)


async def aflush(timeout: float = DEFAULT_FLUSH_TIMEOUT) -> bool:
    """``flush`` for asyncio: the wait runs in a worker thread, never blocking the loop.

    .. versionadded:: 0.2.0
    """
    return await asyncio.to_thread(flush_all, timeout)


class flushing(contextlib.ContextDecorator):  # a verb, like contextlib.suppress
    """Flush every client when the block or the decorated function ends (also on error).

    >>> @cdp_logging.flushing(timeout=2)
    ... def handler(event, context):
    ...     log.info("track", extra={"user_id": event["user"], "event": "Invoked"})

    >>> with cdp_logging.flushing():
    ...     run_task()

    ``delivered`` tells, after the block, whether everything was settled in time.

    .. versionadded:: 0.1.0
    """

    def __init__(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> None:
        self.timeout = timeout
        self.delivered: bool | None = None

    def __enter__(self) -> flushing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.delivered = flush_all(self.timeout)
