"""The sender on a clock the test moves: intervals, backoff and deadlines without sleeping.

The sender is built here as the client builds it, with its buffer, transport and clock
handed in; nothing is patched.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cdp_logging import RetryPolicy
from cdp_logging._buffers.memory import MemoryBuffer
from cdp_logging._core.errors import QUEUE_FULL
from cdp_logging._core.options import build_options
from cdp_logging._core.report import Reporter
from cdp_logging._delivery.sender import Sender
from cdp_logging._transports.base import Response
from cdp_logging._transports.mock import MockTransport

from .conftest import WRITE_KEY
from .fakes import ManualClock

START = 1000.0
REAL = 5.0  # the real seconds any one wait below may take before the test fails


def message(n: int) -> bytes:
    return b'{"type":"track","event":"e","userId":"u","messageId":"%d"}' % n


def ok(messages: list[dict[str, Any]]) -> Response:
    return Response(200, "")


class Rig:
    def __init__(self, transport: MockTransport, size: int = 1000, **options: Any) -> None:
        self.clock = ManualClock(START)
        self.transport = transport
        options.setdefault("flush_interval", 10.0)
        self.reporter = Reporter(options.get("on_error"), str, stderr=False)
        self.sender = Sender(
            build_options(WRITE_KEY, "http://127.0.0.1:9", **options),
            transport,
            self.reporter,
            str,
            buffer=lambda wake, gone: MemoryBuffer(size),
            owns_transport=False,
            clock=self.clock,
        )

    def close(self) -> None:
        self.sender.close(0)


@pytest.fixture
def rigs() -> Any:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()


class TestTriggers:
    def test_the_first_message_goes_at_once_the_next_when_the_interval_passes(
        self, rigs: list[Rig]
    ) -> None:
        """flush_interval is measured from the last flush, on the sender's clock."""
        rig = Rig(MockTransport(ok))
        rigs.append(rig)
        rig.sender.submit(message(1))
        assert rig.transport.wait_for(1, REAL)
        rig.sender.submit(message(2))
        assert rig.clock.wait_for_waiter(START + 10.0)
        rig.clock.advance(9.99)
        assert 1 == len(rig.transport.requests)  # not due: no path sends it before 10 s
        rig.clock.advance(0.01)
        assert rig.transport.wait_for(2, REAL)
        assert ["2"] == [m["messageId"] for m in rig.transport.requests[1]]

    def test_a_full_batch_goes_before_the_interval(self, rigs: list[Rig]) -> None:
        """max_events_in_batch queued starts a flush with no time passing at all."""
        rig = Rig(MockTransport(ok), max_events_in_batch=5)
        rigs.append(rig)
        rig.sender.submit(message(0))
        assert rig.transport.wait_for(1, REAL)
        for n in range(1, 6):
            rig.sender.submit(message(n))
        assert rig.transport.wait_for(2, REAL)
        assert START == rig.clock.monotonic()
        assert 5 == len(rig.transport.requests[1])

    def test_the_buffer_handed_in_is_the_one_that_bounds(self, rigs: list[Rig]) -> None:
        """A buffer of two, with the first message in flight: the fourth is queue_full."""
        release = threading.Event()

        def held(messages: list[dict[str, Any]]) -> Response:
            release.wait(REAL)
            return Response(200, "")

        rig = Rig(MockTransport(held), size=2)
        rigs.append(rig)
        assert rig.sender.submit(message(1)) is None
        assert rig.transport.wait_for(1, REAL)  # taken from the buffer, held in flight
        refusals = [rig.sender.submit(message(n)) for n in (2, 3, 4)]
        release.set()
        assert [None, None, QUEUE_FULL] == refusals
        assert rig.sender.flush(REAL)  # no time passes on the clock: it was never waited on
        assert [["1"], ["2", "3"]] == [
            [m["messageId"] for m in batch] for batch in rig.transport.requests
        ]


class TestRetries:
    def test_retry_after_is_waited_for_on_the_clock(self, rigs: list[Rig]) -> None:
        """A 429 with Retry-After: 30 is retried at 30 s, not before, and no real time passes."""
        answers = iter([Response(429, "slow down", retry_after=30.0)])
        rig = Rig(MockTransport(lambda batch: next(answers, Response(200, ""))))
        rigs.append(rig)
        rig.sender.submit(message(1))
        assert rig.transport.wait_for(1, REAL)
        assert rig.clock.wait_for_waiter(START + 30.0)
        rig.clock.advance(29.9)
        assert 1 == len(rig.transport.requests)
        rig.clock.advance(0.1)
        assert rig.transport.wait_for(2, REAL)
        assert 1 == rig.sender.stats()["delivered"]

    def test_flush_returns_false_at_its_deadline(self, rigs: list[Rig]) -> None:
        """flush(5) against a failing server ends at 5 s on the clock, with False."""
        rig = Rig(
            MockTransport(lambda batch: Response(503, "down")),
            retry=RetryPolicy(base=100.0, cap=100.0),
        )
        rigs.append(rig)
        rig.sender.submit(message(1))
        assert rig.transport.wait_for(1, REAL)
        result: list[bool] = []
        flushing = threading.Thread(target=lambda: result.append(rig.sender.flush(5.0)))
        flushing.start()
        assert rig.clock.wait_for_waiter(START + 5.0)
        assert [] == result
        rig.clock.advance(5.0)
        flushing.join(REAL)
        assert [False] == result
        assert 1 == len(rig.transport.requests)  # the backoff (50-100 s) has not passed

    def test_close_reports_what_its_deadline_leaves(self, rigs: list[Rig]) -> None:
        """close(3) with a retry due after it: the message is reported as shutdown_timeout."""
        errors: list[Any] = []
        rig = Rig(
            MockTransport(lambda batch: Response(503, "down")),
            retry=RetryPolicy(base=100.0, cap=100.0),
            on_error=errors.append,
        )
        rig.sender.submit(message(1))
        assert rig.transport.wait_for(1, REAL)
        rig.sender.close(3.0)
        assert ["shutdown_timeout"] == [error.code for error in errors]
        assert ["1"] == [m["messageId"] for m in errors[0].messages]
