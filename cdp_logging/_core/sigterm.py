"""Holding SIGTERM back while a process delivers what it holds at its end.

A multiprocessing child ends by running its finalizers, ours among them, which delivers
what the child queued. ``Pool.terminate`` (``with Pool() as p:`` leaving its block)
sends SIGTERM to workers that may already be in those finalizers: the default action
kills the delivery half way, and an application's ``sys.exit`` handler stops it with
SystemExit. Holding the signal back for the delivery's bounded time, then letting it
do what it would have done, loses nothing and changes nothing else.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

__all__ = ["holding_sigterm"]


def holding_sigterm(work: Callable[[], object]) -> None:
    """Run *work* (bounded) with SIGTERM held back; then raise it if one came meanwhile."""
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous is None:  # installed outside Python: it could not be put back
            work()
            return
        signal.signal(signal.SIGTERM, hold)
    except ValueError:  # not the main thread: signals cannot be handled here
        work()
        return
    try:
        work()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if received:
            signal.raise_signal(signal.SIGTERM)  # its handler, or its default action, now
