"""What the collector accepted, and every batch request it saw, behind one Condition.

Tests wait on that Condition (``wait_for_messages``) instead of sleeping: the wait ends
the moment a handler thread stores what the test is waiting for, and a test that
fails does so at its timeout rather than at an arbitrary sleep.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RequestRecord", "Store"]


@dataclass(frozen=True)
class RequestRecord:
    """One ``POST /v1/batch`` as the collector saw it, accepted or not.

    Attributes:
        status: The status answered; 0 when a fault closed the connection without
            any answer (``refuse``, ``reset_after_store``).
        reason: Why the request was not answered 200 (the ``error`` text sent back,
            or the fault that cut the connection); empty on 200.
        message_count: Length of the ``batch`` list; 0 when the body did not parse.
        body_bytes: Size of the body after decompression.
        gzip: Whether the body came with ``Content-Encoding: gzip``.
        headers: The request headers, the Authorization value replaced by
            ``"<redacted>"`` so that a record can be printed.
        write_key_ok: Whether the Basic credentials carried an accepted write key.
        sent_at: The batch's ``sentAt`` as sent, if the body had a string there.
        message_ids: The ``messageId`` strings of the batch, in order.
    """

    status: int
    reason: str
    message_count: int
    body_bytes: int
    gzip: bool
    headers: dict[str, str]
    write_key_ok: bool
    sent_at: str | None
    message_ids: tuple[str, ...]


class Store:
    """Thread-safe memory of messages and request records, in arrival order."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._messages: list[dict[str, Any]] = []
        self._records: list[RequestRecord] = []
        self._accepted_requests = 0
        self._seen_ids: set[str] = set()
        self._duplicates = 0
        self._by_type: Counter[str] = Counter()

    def add_rejected(self, record: RequestRecord) -> None:
        """Remember a request whose messages were not stored."""
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()

    def add_accepted(self, record: RequestRecord, messages: Sequence[Mapping[str, Any]]) -> None:
        """Remember a request and store its *messages*, counting repeated messageIds.

        A repeat is stored all the same: the real services de-duplicate later, and a
        test of a client's retries needs to see each copy that arrived.
        """
        with self._changed:
            for message in messages:
                message_id = message.get("messageId")
                if isinstance(message_id, str):
                    if message_id in self._seen_ids:
                        self._duplicates += 1
                    self._seen_ids.add(message_id)
                self._by_type[str(message.get("type"))] += 1
                self._messages.append(copy.deepcopy(dict(message)))
            self._records.append(record)
            self._accepted_requests += 1
            self._changed.notify_all()

    def messages(self) -> list[dict[str, Any]]:
        """Copies of the stored messages, so a caller cannot edit the store."""
        with self._changed:
            return copy.deepcopy(self._messages)

    def records(self) -> list[RequestRecord]:
        with self._changed:
            return list(self._records)

    def counts(self) -> dict[str, Any]:
        with self._changed:
            return {
                "requests": len(self._records),
                "accepted_requests": self._accepted_requests,
                "rejected_requests": len(self._records) - self._accepted_requests,
                "messages": len(self._messages),
                "by_type": dict(self._by_type),
                "duplicate_message_ids": self._duplicates,
            }

    def wait_for_messages(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._messages) >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._records) >= count, timeout)

    def reset(self) -> None:
        with self._changed:
            self._messages.clear()
            self._records.clear()
            self._accepted_requests = 0
            self._seen_ids.clear()
            self._duplicates = 0
            self._by_type.clear()
            self._changed.notify_all()
