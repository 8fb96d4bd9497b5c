"""Fault injection: make the collector fail the way real servers and networks do.

Every fault is a real HTTP answer, a real delay, or a real closed or reset connection
on a real socket, so a client's retry code is tested against what it will meet in
production rather than against a mock of it.

Faults apply to ``POST /v1/batch`` only, so the control endpoints (``/stats``,
``/faults``...) keep working while the batch endpoint misbehaves. Each fault acts at
the point of a request where its failure happens in life:

1. ``refuse``: as soon as the request line and headers have arrived, before the body
   is read;
2. ``latency``: delays the answer, whatever it turns out to be;
3. ``status``: after the body is read, before it is looked at (an overloaded or
   broken server answers before checking anything);
4. ``reject_type`` then ``reset_after_store``: only on a batch that would otherwise
   be accepted.

Among the faults of one point, the one added first wins, and only a fault that acts
uses up one of its *count*.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, get_args

from .._core.protocol import CALL_TYPES

__all__ = ["Fault", "FaultKind", "FaultPlan"]

# The longest a latency fault holds an answer, and the longest window of any fault: a
# day is longer than any test, and far from the limits of a thread's wait.
MAX_DELAY_SECONDS: Final = 3600.0
MAX_SECONDS: Final = 86400.0

FaultKind = Literal["status", "latency", "refuse", "reset_after_store", "reject_type"]
_KINDS: frozenset[str] = frozenset(get_args(FaultKind))


@dataclass(frozen=True)
class Fault:
    """One fault as it was added; the plan keeps track of how much of it is left.

    Only the fields that its *kind* uses are set; the others stay None.
    """

    kind: FaultKind
    status: int | None = None
    delay: float | None = None
    retry_after: int | str | None = None
    reason: str | None = None
    call_type: str | None = None
    count: int | None = None
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form ``POST /faults`` takes and ``GET /faults`` returns."""
        return {key: value for key, value in asdict(self).items() if value is not None}


class _Armed:
    """A fault in force, with the uses and the time it has left."""

    __slots__ = ("deadline", "fault", "remaining")

    def __init__(self, fault: Fault, deadline: float | None) -> None:
        self.fault = fault
        self.remaining = fault.count
        self.deadline = deadline

    def live(self, now: float) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return self.deadline is None or now < self.deadline


def _check_count(count: object) -> int | None:
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer or None, got {count!r}")
    return count


def _check_seconds(
    value: object, name: str, *, zero_ok: bool = False, most: float = MAX_SECONDS
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{name} must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")
    if value > most:
        # Beyond this a wait overflows the platform's timeout (1e308 did: the request
        # then got no answer at all), and no test needs it.
        raise ValueError(f"{name} must be at most {most:g} seconds, got {value!r}")
    return float(value)


def _check_status(status: object) -> int:
    # 200 is allowed on purpose: "answer 200 and drop the data" is what both real
    # services do with malformed events, and a client test may want to see it.
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError(f"status must be an HTTP status from 200 to 599, got {status!r}")
    return status


def _check_reason(reason: object) -> str | None:
    if reason is not None and not isinstance(reason, str):
        raise ValueError(f"reason must be a string or None, got {reason!r}")
    return reason


def _check_retry_after(value: object) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    # A string is sent as it is, so an HTTP-date form can be tested too; it goes into a
    # header, where a line break would let it forge other headers.
    if isinstance(value, str) and value.strip() and value.isprintable():
        return value
    raise ValueError(f"retry_after must be whole seconds >= 0 or a header string, got {value!r}")


class FaultPlan:
    """The faults in force for one collector; every method is thread-safe.

    Each adding method returns the :class:`Fault` it added. *count* limits a fault to
    that many requests, *seconds* to a window starting now; with both, the fault ends
    at whichever runs out first; with neither, it lasts until :meth:`clear`.

    Args:
        clock: Seconds on a monotonic clock; injectable so that time windows can be
            tested without waiting for them.

    Raises:
        ValueError: from every adding method, for an argument out of range or of the
            wrong type, before anything is added.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def __repr__(self) -> str:
        return f"<FaultPlan {[fault.to_json() for fault in self.active()]!r}>"

    def _arm(self, fault: Fault) -> Fault:
        _check_count(fault.count)
        if fault.seconds is not None:
            _check_seconds(fault.seconds, "seconds")
        with self._lock:
            deadline = None if fault.seconds is None else self._clock() + fault.seconds
            self._armed.append(_Armed(fault, deadline))
        return fault

    def status(
        self,
        status: int,
        *,
        count: int | None = None,
        seconds: float | None = None,
        retry_after: int | str | None = None,
        reason: str | None = None,
    ) -> Fault:
        """Answer *status* to batch requests without storing them.

        Args:
            status: The HTTP status to answer (200-599).
            retry_after: Sent as the ``Retry-After`` header when given.
            reason: The ``error`` text of the JSON body; a default names the fault.
        """
        return self._arm(
            Fault(
                "status",
                status=_check_status(status),
                retry_after=_check_retry_after(retry_after),
                reason=_check_reason(reason),
                count=count,
                seconds=seconds,
            )
        )

    def latency(
        self, delay: float, *, count: int | None = None, seconds: float | None = None
    ) -> Fault:
        """Hold back each matching answer by *delay* seconds.

        The request is handled (and stored, if valid) first; only the answer waits, as
        with a slow network, so a client that times out and retries sends a duplicate.
        Stopping the collector cuts the wait short.
        """
        return self._arm(
            Fault(
                "latency",
                delay=_check_seconds(delay, "delay", zero_ok=True, most=MAX_DELAY_SECONDS),
                count=count,
                seconds=seconds,
            )
        )

    def refuse(self, *, count: int | None = None, seconds: float | None = None) -> Fault:
        """Close the connection of matching batch requests without any answer.

        The connection is reset once the request's headers have arrived and before its
        body is read, so the client sees a connection error and nothing is stored.
        """
        return self._arm(Fault("refuse", count=count, seconds=seconds))

    def reset_after_store(self, *, count: int | None = None, seconds: float | None = None) -> Fault:
        """Store a valid batch as accepted, then reset the connection instead of answering.

        This is the lost answer: the client cannot tell it from a lost request, so it
        retries with the same messageIds, and ``duplicate_message_ids`` shows it did.
        """
        return self._arm(Fault("reset_after_store", count=count, seconds=seconds))

    def reject_type(
        self,
        call_type: str,
        status: int = 400,
        *,
        count: int | None = None,
        seconds: float | None = None,
        reason: str | None = None,
    ) -> Fault:
        """Answer *status* to any valid batch holding a message of *call_type*.

        Nothing of that request is stored, as when a destination rejects one kind of
        call; requests without that type are accepted as usual.
        """
        if call_type not in CALL_TYPES:
            raise ValueError(f"call_type must be one of {', '.join(CALL_TYPES)}, got {call_type!r}")
        return self._arm(
            Fault(
                "reject_type",
                status=_check_status(status),
                call_type=call_type,
                reason=_check_reason(reason),
                count=count,
                seconds=seconds,
            )
        )

    def add(self, spec: Mapping[str, Any]) -> Fault:
        """Add a fault from its JSON form, as ``POST /faults`` receives it.

        *spec* names the method in ``"kind"`` and passes its arguments by name, e.g.
        ``{"kind": "status", "status": 503, "count": 3}`` or
        ``{"kind": "reject_type", "call_type": "group"}``.
        """
        kind = spec.get("kind")
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(sorted(_KINDS))}, got {kind!r}")
        method: Callable[..., Fault] = getattr(self, kind)
        arguments = {key: value for key, value in spec.items() if key != "kind"}
        try:
            inspect.signature(method).bind(**arguments)
        except TypeError as error:
            raise ValueError(f"{kind} fault: {error}") from None
        return method(**arguments)

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._armed.clear()

    def active(self) -> list[Fault]:
        """The faults still in force, in the order they were added."""
        now = self._clock()
        with self._lock:
            return [armed.fault for armed in self._armed if armed.live(now)]

    def take(self, kinds: Collection[str], call_types: Collection[str] = ()) -> Fault | None:
        """Use up one request of the first live fault of *kinds*, and return it.

        The server calls this at each point of a request (see the module docstring);
        a ``reject_type`` fault matches only when its type is among *call_types*.
        """
        now = self._clock()
        with self._lock:
            self._armed = [armed for armed in self._armed if armed.live(now)]
            for armed in self._armed:
                fault = armed.fault
                if fault.kind not in kinds:
                    continue
                if fault.kind == "reject_type" and fault.call_type not in call_types:
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                return fault
        return None
