"""How long to wait before retrying a batch, and how often: one value, passed in.

The policy is data rather than module constants so that a test (or an application
with its own latency budget) hands the client a different one with ``retry=``, instead
of patching globals that every client in the process shares.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_RETRY", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter, a cap, and a cap on ``Retry-After``.

    Before retry *n* (1-based) the sender waits a time drawn from ``[d/2, d]`` with
    ``d = min(cap, base * 2**(n-1))``: "equal jitter", so a fleet of workers that failed
    together does not retry together, and no retry comes sooner than half the nominal
    delay (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).
    A server's ``Retry-After`` lengthens the wait, up to ``max_retry_after``: honouring
    an hour-long answer would only fill the queue and drop newer events instead.

    Args:
        base: Seconds of the first nominal delay.
        cap: Seconds no nominal delay exceeds.
        max_retry_after: Seconds a ``Retry-After`` is shortened to.
        max_retries: Retries of one batch after network errors, 408, 429 and 5xx,
            before it fails for good. ``None`` takes the client's ``max_retries``
            option; the client's ``options.retry`` always holds the number in force.

    .. versionadded:: 0.2.0
    """

    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 60.0
    max_retries: int | None = None

    def __post_init__(self) -> None:
        for name in ("base", "cap", "max_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"retry.{name} must be a number of seconds >= 0, got {value!r}")
        if self.max_retries is not None and (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ValueError(
                f"retry.max_retries must be a whole number >= 0, got {self.max_retries!r}"
            )

    def nominal(self, attempt: int) -> float:
        """The upper end of the wait before retry *attempt* (1-based), before Retry-After."""
        # The exponent is bounded: 2.0 ** 1024 overflows, and 2 ** 64 is past any cap.
        return min(self.cap, self.base * 2.0 ** min(attempt - 1, 64))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry *attempt* (1-based)."""
        nominal = self.nominal(attempt)
        wait = random.uniform(nominal / 2, nominal)  # noqa: S311 - jitter, not crypto
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


DEFAULT_RETRY: Final = RetryPolicy()
