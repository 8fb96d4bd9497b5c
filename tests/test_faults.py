"""The fault matrix: every fault a real HTTP exchange on 127.0.0.1, every case ending
with what the collector counted. Nothing deliverable is lost, nothing is sent twice
(except after a reset-after-store), every wait is bounded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from cdp_logging import Analytics, AnalyticsHandler, DeliveryError
from cdp_logging.collector import Collector

from .conftest import WRITE_KEY

MakeClient = Callable[..., Analytics]


def send_batches(client: Analytics, batches: int, size: int) -> None:
    for b in range(batches):
        for i in range(size):
            client.track(f"u{b}-{i}", "E")
        client.flush(10)


@pytest.mark.usefixtures("fast_retries")
class TestFaultMatrix:
    def test_500s_for_a_window(self, collector: Collector, make_client: MakeClient) -> None:
        """500s for 0.5 s: everything sent meanwhile arrives once the window closes."""
        collector.faults.status(500, seconds=0.5)
        client = make_client(max_retries=100)
        send_batches(client, 5, 20)

        assert client.flush(10)
        assert 100 == len(collector.messages())
        assert 0 == collector.counts()["duplicate_message_ids"]
        assert client.stats()["retried"] > 0

    def test_reset_after_store_retries_same_ids(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A reset after the server stored the batch is retried with the same messageIds."""
        collector.faults.reset_after_store(count=1)
        client = make_client()
        futures = [client.track(f"u{i}", "E") for i in range(10)]

        assert client.flush(10)
        assert all(f.exception(timeout=5) is None for f in futures)
        reset = collector.batches()[0]
        assert 2 == [b.message_ids for b in collector.batches()].count(reset.message_ids)
        ids = [m["messageId"] for m in collector.messages()]
        assert 10 == len(set(ids))
        assert len(ids) - 10 == collector.counts()["duplicate_message_ids"]

    def test_slow_server_never_slows_the_logging_call(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """With 3 s per request, the logging call stays fast (median under 2 ms) and,
        at p99 too, never waits for a request."""
        collector.faults.latency(3.0)
        handler = AnalyticsHandler(write_key=WRITE_KEY, host=collector.url, shutdown_timeout=0.2)
        app_logger.addHandler(handler)
        durations = []
        for i in range(2000):
            started = time.perf_counter()
            app_logger.info("track", extra={"user_id": f"u{i}", "event": "E"})
            durations.append(time.perf_counter() - started)
        durations.sort()

        assert durations[len(durations) // 2] < 0.002
        # vs 3 s a request. Not 2 ms at p99: on a loaded machine a call that the OS
        # preempts takes a scheduler slice or more (measured: up to ~100 ms), and in some
        # runs more than 1% of the 2,000 calls are preempted.
        assert durations[len(durations) * 99 // 100] < 0.05
        assert durations[-1] < 1.0  # not one call waited for a 3 s request
        collector.faults.clear()
        assert handler.client.flush(15)
        assert 2000 == len(collector.messages())

    @pytest.mark.parametrize("status", [401, 403])
    def test_auth_failure_reported_once_clearly(
        self,
        collector: Collector,
        make_client: MakeClient,
        status: int,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """401/403: not retried, blames the write key, warns once, never shows it."""
        collector.faults.status(status)
        errors: list[DeliveryError] = []
        client = make_client(on_error=errors.append)
        send_batches(client, 3, 5)

        sent = [i for b in collector.batches() for i in b.message_ids]
        assert 15 == len(sent) == len(set(sent))  # each message sent once: no retries
        assert {status} == {e.status for e in errors}
        assert 15 == sum(len(e.messages) for e in errors)
        assert all("write key was refused" in e.reason for e in errors)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if f"HTTP {status}" in line]
        assert 1 == len(lines)
        assert "check write_key / CDP_WRITE_KEY" in lines[0]
        assert WRITE_KEY not in err + "".join(str(e) for e in errors)

    def test_other_400_reported_with_server_reason(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A 400 (here: a call type the server rejects) is reported with its reason, not retried,
        and other requests go on."""
        collector.faults.reject_type("group", 400, reason="groups are not enabled for this source")
        errors: list[DeliveryError] = []
        client = make_client(on_error=errors.append, flush_triggers=["group", "track"])
        client.group("u", "g").exception(timeout=5)
        client.track("u", "fine").exception(timeout=5)

        assert ["fine"] == [m["event"] for m in collector.messages()]
        assert 1 == len(errors)
        assert "groups are not enabled for this source" in errors[0].reason
        assert 2 == len(collector.batches())

    def test_refused_connections_then_recovery(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """Connections closed without an answer are retried until one is answered."""
        collector.faults.refuse(count=3)
        client = make_client()
        future = client.track("u", "E")

        assert future.exception(timeout=10) is None
        assert 1 == len(collector.messages())


class TestQueueFull:
    def test_reports_at_a_bounded_rate(
        self, collector: Collector, make_client: MakeClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Thousands of drops make one stderr line, not one per drop; stats count them all."""
        collector.stop()
        client = make_client(max_queue_size=100, max_retries=1000, shutdown_timeout=0.2)
        for i in range(5000):
            client.track(f"u{i}", "E")

        lines = [line for line in capsys.readouterr().err.splitlines() if "queue_full" in line]
        assert 1 == len(lines)
        assert "max_queue_size=100" in lines[0]
        assert client.stats()["errors"]["queue_full"] >= 4800

    def test_memory_stays_bounded_while_collector_is_down(
        self, collector: Collector, make_client: MakeClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With the collector down, 50,000 calls hold no more than the queue's worth."""
        import tracemalloc

        collector.stop()
        client = make_client(max_queue_size=1000, max_retries=1000, shutdown_timeout=0.2)
        properties = {"blob": "x" * 500}
        tracemalloc.start()
        for i in range(5000):
            client.track(f"u{i}", "E", properties)
        after_5k = tracemalloc.get_traced_memory()[0]
        for i in range(45_000):
            client.track(f"u{i}", "E", properties)
        after_50k = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()

        assert 1000 + 1 >= client.stats()["pending"]  # the queue, and one request in flight
        assert after_50k - after_5k < 200_000  # the queue was full at 5k already


class TestFlushDeadlines:
    def test_flush_timeout_never_hammers_a_rate_limited_server(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A flush that times out waits for Retry-After like everyone else: no burst, no loss."""
        collector.faults.status(429, retry_after=30)
        client = make_client(max_retries=10)
        future = client.track("u", "E")

        assert not client.flush(1.0)
        assert 1 == len(collector.batches())
        assert not future.done()  # still the sender's, waiting out Retry-After
        assert 0 == client.stats()["failed"]

    def test_flush_and_close_never_overrun_their_deadline(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A server slower than the deadline does not stretch flush() or close()."""
        collector.faults.latency(4.0)
        client = make_client(timeout=10)
        client.track("u", "E")
        started = time.monotonic()

        assert not client.flush(0.5)
        client.close(0.5)

        assert time.monotonic() - started < 1.6

    def test_cancelled_future_does_not_stop_the_sender(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A Future the app cancelled is skipped; the sender goes on delivering."""
        client = make_client(flush_interval=60, max_events_in_batch=1000)
        client.track("u", "first").result(timeout=5)
        cancelled = client.track("u", "cancelled")
        assert cancelled.cancel()
        after = client.track("u", "after")

        assert client.flush(5)
        assert after.exception(timeout=5) is None
        assert 3 == len(collector.messages())
