"""flush() and @flushing: deliver at the end of a unit of work, bounded."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import cdp_logging
from cdp_logging import Analytics
from cdp_logging.collector import Collector

MakeClient = Callable[..., Analytics]


class TestFlush:
    def test_flushes_every_client(self, collector: Collector, make_client: MakeClient) -> None:
        """flush() sends what every client in the process holds."""
        clients = [make_client(flush_interval=60, max_events_in_batch=1000) for _ in range(3)]
        for n, client in enumerate(clients):
            client.track("u", "first")
            client.track("u", f"queued-{n}")

        assert cdp_logging.flush(5)
        assert 6 == len(collector.messages())

    def test_one_timeout_for_all(self, collector: Collector, make_client: MakeClient) -> None:
        """The timeout bounds the whole flush, not each client's."""
        collector.faults.latency(3.0)
        for _ in range(3):
            make_client(timeout=10).track("u", "slow")
        started = time.monotonic()

        assert not cdp_logging.flush(0.5)
        assert time.monotonic() - started < 1.5
        collector.faults.clear()


class TestFlushing:
    def test_decorator_flushes_when_the_function_returns(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A decorated function's events are delivered by the time it returns."""
        client = make_client(flush_interval=60, max_events_in_batch=1000)
        client.track("u", "first").result(timeout=5)

        @cdp_logging.flushing(timeout=5)
        def invocation(n: int) -> int:
            client.track("u", f"call-{n}")
            return n

        assert 7 == invocation(7)
        assert ["call-7", "first"] == sorted(m["event"] for m in collector.messages())

    def test_context_manager_flushes_on_error_too(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """The block's events are delivered even when it raises; the error propagates."""
        client = make_client(flush_interval=60, max_events_in_batch=1000)
        client.track("u", "first").result(timeout=5)
        block = cdp_logging.flushing(timeout=5)

        def task() -> None:
            with block:
                client.track("u", "before the error")
                raise RuntimeError("task failed")

        with pytest.raises(RuntimeError, match="task failed"):
            task()

        assert block.delivered is True
        assert 2 == len(collector.messages())
