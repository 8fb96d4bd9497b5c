"""The clock the sender measures its deadlines and waits by, passed in.

Every "when" of delivery (the flush interval, a retry's backoff and its Retry-After, a
flush's or close's deadline, when to try a thread start again) is a reading of one
``Clock`` and every wait for one is a ``Clock.wait``. Production uses the system's
monotonic clock; a test hands the sender a clock it moves by hand, so a ten-second
flush interval or a thirty-second Retry-After is tested in milliseconds and without
sleeping (OpenTelemetry's BatchProcessor tests wait on real time instead, which is
what this avoids).
"""

from __future__ import annotations

import time
from typing import Final, Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "Waitable"]


class Waitable(Protocol):
    """A ``threading.Event``, or a ``threading.Condition`` held by the caller."""

    def wait(self, timeout: float | None = None) -> bool: ...


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """``waitable.wait(timeout)``, with *timeout* measured on this clock."""


class SystemClock:
    """``time.monotonic`` and the waitable's own timed wait."""

    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def wait(waitable: Waitable, timeout: float | None) -> bool:
        return waitable.wait(timeout)

    def __repr__(self) -> str:
        return "<SystemClock>"


SYSTEM_CLOCK: Final = SystemClock()
