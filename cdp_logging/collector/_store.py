"""What the collector accepted, and every request it saw, behind one Condition.

Tests wait on this Condition (``wait_for_messages``) instead of sleeping: the wait ends
the moment the server stores what the test is waiting for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RequestRecord", "Store"]


@dataclass(frozen=True)
class RequestRecord:
    """One request as the collector saw it (the Authorization header is redacted)."""

    status: int
    reason: str
    message_count: int
    body_bytes: int
    gzip: bool
    headers: dict[str, str] = field(repr=False)
    write_key_ok: bool
    sent_at: str | None
    message_ids: tuple[str, ...] = field(repr=False)
    received_at: float = field(default_factory=time.monotonic, repr=False)


class Store:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: list[dict[str, Any]] = []
        self._requests: list[RequestRecord] = []
        self._seen_ids: set[str] = set()
        self._duplicates = 0

    def add(self, record: RequestRecord, messages: list[dict[str, Any]]) -> None:
        with self._cond:
            for message in messages:
                message_id = message.get("messageId")
                if isinstance(message_id, str):
                    if message_id in self._seen_ids:
                        self._duplicates += 1
                    self._seen_ids.add(message_id)
            self._messages.extend(messages)
            self._requests.append(record)
            self._cond.notify_all()

    def messages(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(message) for message in self._messages]

    def requests(self) -> list[RequestRecord]:
        with self._cond:
            return list(self._requests)

    def counts(self) -> dict[str, Any]:
        with self._cond:
            by_type: dict[str, int] = {}
            for message in self._messages:
                kind = str(message.get("type"))
                by_type[kind] = by_type.get(kind, 0) + 1
            accepted = sum(1 for r in self._requests if r.status == 200)
            return {
                "requests": len(self._requests),
                "accepted_requests": accepted,
                "rejected_requests": len(self._requests) - accepted,
                "messages": len(self._messages),
                "by_type": by_type,
                "duplicate_message_ids": self._duplicates,
            }

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_for_messages(self, count: int, timeout: float) -> bool:
        return self.wait(lambda: len(self._messages) >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        return self.wait(lambda: len(self._requests) >= count, timeout)

    def reset(self) -> None:
        with self._cond:
            self._messages.clear()
            self._requests.clear()
            self._seen_ids.clear()
            self._duplicates = 0
            self._cond.notify_all()
