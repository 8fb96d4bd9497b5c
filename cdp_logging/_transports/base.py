"""What a transport is: one POST of one body, and what its answer means for a retry.

The sender and the buffers that forward batches know only this module; the requests
transport and the test double implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, Protocol

__all__ = [
    "CONFIGURATION_STATUSES",
    "BufferFull",
    "Outcome",
    "Response",
    "Transport",
    "TransportError",
    "classify",
]


class TransportError(Exception):
    """The request did not get an HTTP answer (DNS, refused, reset, timeout)."""


class BufferFull(Exception):
    """A shared buffer the batch was handed to is at its bound: drop it (``queue_full``).

    Raised by a buffer that forwards batches (the Redis stream's); the text is the
    reason reported with the dropped messages.
    """


@dataclass(frozen=True)
class Response:
    status: int
    text: str
    retry_after: float | None = None


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"
    TOO_LARGE = "too_large"
    REFUSED = "refused"


def classify(status: int) -> Outcome:
    """Decide what an HTTP status means for the batch that got it.

    408, 429 and 5xx are the server's trouble and may pass. 413 says the body is too
    large for the server or a proxy in front of it (nginx's ``client_max_body_size``
    defaults to 1 MB, and is often set lower): smaller requests may pass. 400 refuses
    the batch, usually for one bad message in it: a part without it may pass. Any other
    4xx (a refused write key, say) means no request of ours will be accepted, so
    retrying only delays the report.
    """
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in (408, 429) or status >= 500:
        return Outcome.RETRY
    if status == 413:
        return Outcome.TOO_LARGE
    if status == 400:
        return Outcome.REFUSED
    return Outcome.GIVE_UP


# Answers that say our configuration is wrong (write key, host, path), not the messages:
# a durable buffer keeps messages that got one, for a process started with the fix,
# instead of deleting a whole backlog (or a fleet's whole stream) over one typo.
CONFIGURATION_STATUSES: Final = frozenset({401, 403, 404})


class Transport(Protocol):
    def send(self, body: bytes, timeout: float) -> Response:
        """POST *body* (a complete batch) and return the answer within *timeout* seconds.

        *timeout* is the smaller of the ``timeout`` option and the time left before a
        flush's or close's deadline, so that no request outlives the deadline.

        Raises:
            TransportError: when no HTTP answer came back.
        """

    def close(self) -> None: ...
