"""How failures reach a person: the on_error callback, counters, and stderr.

The library's own diagnostics go to ``sys.stderr`` directly, never through ``logging``:
a record logged from here would come back to the same handler (or deadlock on the
logging lock during ``dictConfig``), which is how similar libraries recursed forever.
stderr lines are rate-limited per reason: a dead collector must not turn every dropped
message into a line of its own, but four different mistakes must not show as one. Two
reasons are the same reason when they differ only in values (sizes, ids, counts, quoted
names): "unknown call type 'Track'" and "unknown call type 'Pgae'" are one reason,
"track needs an event" is another, and each is told at least once.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from .errors import DeliveryError

__all__ = ["WARNING_INTERVAL", "Reporter", "warn"]

WARNING_INTERVAL: Final = 10.0
# Distinct reasons kept apart for rate limiting; past this many, a code's further
# reasons share one line (a client inventing a new reason per call cannot grow this).
MAX_REASONS: Final = 256
# Values inside a reason: quoted text, and numbers with their separators.
_VALUES: Final = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(?:[.,:]\d+)*")


def reason_shape(reason: str) -> str:
    """*reason* with its values blanked: what makes two reasons the same for a person."""
    return _VALUES.sub("#", reason)


def warn(line: str) -> None:
    """Write one diagnostic line to stderr, if there still is one."""
    stream = sys.stderr
    if stream is None:  # interpreter teardown, or pythonw
        return
    try:
        stream.write(f"cdp_logging: {line}\n")
        stream.flush()
    except Exception:  # noqa: BLE001, S110 - a closed stderr must not break delivery
        pass


class Reporter:
    """Counts failures by code, calls ``on_error``, and warns on stderr at a bounded rate.

    Safe to call from a signal handler. A handler runs in the main thread between two
    bytecodes, maybe while that thread is counting here with the lock held; with a plain
    ``Lock`` a refused logging call in the handler would wait forever for its own
    thread. The lock is an ``RLock`` (so the handler gets in), and ``_busy`` marks the
    counting itself: a call that finds it set leaves its failure in ``_reentered`` for
    the interrupted call, which counts everything queued there before it lets go.
    """

    def __init__(
        self,
        on_error: Callable[[DeliveryError], object] | None,
        scrub: Callable[[str], str],
        interval: float = WARNING_INTERVAL,
        *,
        stderr: bool = True,
    ) -> None:
        self._on_error = on_error
        self._scrub = scrub
        self._interval = interval
        # False where the caller tells the user itself (the CLI prints its own line).
        self._stderr = stderr
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.RLock()
        self._busy = False
        self._reentered: deque[tuple[DeliveryError, int, float]] = deque()
        self._counts: dict[str, int] = {}
        # (code, reason shape) -> (time of its last line, messages since not yet written,
        # the last such reason's text)
        self._pending: dict[tuple[str, str], tuple[float, int, str]] = {}

    def reset_after_fork(self) -> None:
        """A child starts with its own counts, and not with a lock the parent held."""
        self._reset()

    @property
    def wants_errors(self) -> bool:
        """Whether anyone will look at a DeliveryError's messages (worth building them)."""
        return self._on_error is not None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def report(
        self, error: DeliveryError, count: int | None = None, *, callback: bool = True
    ) -> None:
        """Record *error* (affecting *count* messages, default its own) and tell the user.

        *callback* False leaves ``on_error`` out: for a call made from inside a callback,
        which ``on_error`` itself may be (reporting to it again would recurse).
        """
        affected = len(error.messages) if count is None else count
        lines = self._count(error, affected, time.monotonic())
        if self._stderr:
            for line in lines:
                warn(line)
        on_error = self._on_error
        if on_error is not None and callback:
            try:
                on_error(error)
            except Exception as problem:  # noqa: BLE001 - the app's callback must not stop delivery
                warn(f"on_error raised {type(problem).__name__}: {self._scrub(str(problem))}")

    def _count(self, error: DeliveryError, affected: int, now: float) -> list[str]:
        """Count *error* and every failure a signal handler left; the lines to write."""
        with self._lock:
            reentered = self._reentered
            reentered.append((error, affected, now))  # one atomic step
            if self._busy:
                return []  # this thread was interrupted below: it counts ours too
            lines = []
            while reentered:  # bounded: a handler adds only while we are busy
                self._busy = True
                while reentered:
                    line = self._tally(*reentered.popleft())
                    if line is not None:
                        lines.append(line)
                self._busy = False
            return lines

    def _tally(self, error: DeliveryError, affected: int, now: float) -> str | None:
        self._counts[error.code] = self._counts.get(error.code, 0) + affected
        key = (error.code, reason_shape(error.reason))
        if key not in self._pending and len(self._pending) >= MAX_REASONS:
            key = (error.code, "")
        last, held, _ = self._pending.get(key, (-self._interval, 0, ""))
        if now - last >= self._interval:
            self._pending[key] = (now, 0, error.reason)
            return self._line(error, held + affected)
        self._pending[key] = (last, held + affected, error.reason)
        return None

    def summarise(self) -> None:
        """Write the lines that rate limiting held back; called when the client closes."""
        with self._lock:
            held = sorted(
                (code, n, reason) for (code, _), (_, n, reason) in self._pending.items() if n
            )
            self._pending.clear()
        if not self._stderr:
            return
        for code, n, reason in held:
            noun = "message" if n == 1 else "messages"
            warn(
                f"{n} more {noun} not delivered ({code}) since the last warning, the last: {reason}"
            )

    def _line(self, error: DeliveryError, total: int) -> str:
        noun = "message" if total == 1 else "messages"
        status = f", HTTP {error.status}" if error.status is not None else ""
        # A reason is scrubbed where others' text was put in it (see ``Ledger.failed``).
        return f"{total} {noun} not delivered ({error.code}{status}): {error.reason}"
