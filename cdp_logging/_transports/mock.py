"""A transport that answers from a function: for tests where a socket cannot show it.

httpx's ``MockTransport`` is the model: the test says, per request, what the server
answers (a status, a Retry-After, an exception for "no answer"), and reads back what
was sent. Tests of the local collector still use a real socket; this is for a sender
unit test that needs an exact answer sequence or an injected clock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from .base import Response

__all__ = ["MockTransport"]

Handler = Callable[[list[dict[str, Any]]], Response]


class MockTransport:
    """Answers each request with ``handler(messages)`` and keeps what it was sent.

    ``wait_for(count, timeout)`` blocks until *count* requests have arrived, so a test
    waits on the event itself instead of sleeping.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[list[dict[str, Any]]] = []
        self.closed = 0
        self._arrived = threading.Condition()

    def send(self, body: bytes, timeout: float) -> Response:
        messages: list[dict[str, Any]] = json.loads(body)["batch"]
        with self._arrived:
            self.requests.append(messages)
            self._arrived.notify_all()
        return self._handler(messages)

    def close(self) -> None:
        self.closed += 1

    def wait_for(self, count: int, timeout: float) -> bool:
        """Whether *count* requests have arrived within *timeout* real seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.requests) >= count, timeout)

    def delivered(self) -> list[dict[str, Any]]:
        """The messages of every request that got a 2xx (the handler must be pure)."""
        return [m for batch in self.requests if self._handler(batch).status < 300 for m in batch]
