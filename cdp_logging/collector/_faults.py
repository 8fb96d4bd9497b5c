"""Fault injection: make the collector fail the way real servers and networks do.

Every fault is a real HTTP exchange (or a real closed or reset connection) on
127.0.0.1, so the client's retry and reporting code is tested against sockets, not
mocks. A fault lasts for a number of requests (``count``), a time window
(``seconds``), or until cleared; the first matching fault wins.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Fault", "FaultPlan"]

Kind = Literal["status", "latency", "refuse", "reset_after_store", "reject_type"]


@dataclass
class Fault:
    kind: Kind
    status: int = 500
    count: int | None = None
    until: float | None = None
    retry_after: float | None = None
    reason: str | None = None
    delay: float = 0.0
    call_type: str | None = None

    def active(self, now: float) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        return self.until is None or now < self.until


class FaultPlan:
    """The faults in force; thread-safe, shared by every request handler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def _add(self, fault: Fault, seconds: float | None) -> None:
        if seconds is not None:
            fault.until = time.monotonic() + seconds
        with self._lock:
            self._faults.append(fault)

    def status(
        self,
        status: int,
        *,
        count: int | None = None,
        seconds: float | None = None,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Answer *status* (nothing stored) to the next *count* requests or for *seconds*."""
        self._add(Fault("status", status, count, retry_after=retry_after, reason=reason), seconds)

    def latency(
        self, delay: float, *, count: int | None = None, seconds: float | None = None
    ) -> None:
        """Hold each matching answer back by *delay* seconds."""
        self._add(Fault("latency", count=count, delay=delay), seconds)

    def refuse(self, *, count: int | None = None, seconds: float | None = None) -> None:
        """Close the next connections without any answer."""
        self._add(Fault("refuse", count=count), seconds)

    def reset_after_store(self, *, count: int | None = 1, seconds: float | None = None) -> None:
        """Store the batch, then reset the connection instead of answering."""
        self._add(Fault("reset_after_store", count=count), seconds)

    def reject_type(self, call_type: str, status: int = 400, *, reason: str | None = None) -> None:
        """Answer *status* to any request holding a message of *call_type*, until cleared."""
        self._add(Fault("reject_type", status, call_type=call_type, reason=reason), None)

    def add_from_json(self, spec: dict[str, Any]) -> None:
        """The HTTP form (POST /faults): {"kind": ..., plus the keyword arguments}."""
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind == "status":
            self.status(int(spec.pop("status")), **spec)
        elif kind == "latency":
            self.latency(float(spec.pop("delay")), **spec)
        elif kind == "refuse":
            self.refuse(**spec)
        elif kind == "reset_after_store":
            self.reset_after_store(**spec)
        elif kind == "reject_type":
            self.reject_type(str(spec.pop("call_type")), **spec)
        else:
            raise ValueError(f"unknown fault kind {kind!r}")

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, kinds: tuple[Kind, ...], call_types: set[str] | None = None) -> Fault | None:
        """Consume one use of the first active fault of *kinds*, and return it."""
        now = time.monotonic()
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds or not fault.active(now):
                    continue
                if fault.kind == "reject_type" and (
                    call_types is None or fault.call_type not in call_types
                ):
                    continue
                if fault.count is not None:
                    fault.count -= 1
                return fault
        return None

    def delay(self) -> float:
        """The total latency to add to this answer (consuming each latency fault once)."""
        now = time.monotonic()
        total = 0.0
        with self._lock:
            for fault in self._faults:
                if fault.kind == "latency" and fault.active(now):
                    if fault.count is not None:
                        fault.count -= 1
                    total += fault.delay
        return total
