"""Analytics: the calls, batching, limits, retries, flush/close and stats, on a real collector."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

import cdp_logging
from cdp_logging import Analytics, DeliveryError
from cdp_logging.collector import Collector

from .conftest import WRITE_KEY

MakeClient = Callable[..., Analytics]


def outcome(future: Future[dict[str, Any]], timeout: float = 5) -> BaseException | None:
    return future.exception(timeout=timeout)


class TestCalls:
    def test_six_calls_delivered(self, collector: Collector, make_client: MakeClient) -> None:
        """identify, track, page, screen, group and alias each arrive with their fields."""
        client = make_client()
        futures = [
            client.identify("u1", traits={"plan": "pro"}),
            client.track("u1", "Purchased an Item", {"revenue": 39.95}),
            client.page(anonymous_id="a1", name="Docs", category="Help"),
            client.screen("u1", "Home"),
            client.group("u1", "g1", {"name": "Acme"}),
            client.alias("a1", "u1"),
        ]
        assert client.flush(5)

        assert [outcome(f) for f in futures] == [None] * 6
        sent = {m["type"]: m for m in collector.messages()}
        assert ["alias", "group", "identify", "page", "screen", "track"] == sorted(sent)
        assert {"plan": "pro"} == sent["identify"]["traits"]
        assert ("Purchased an Item", {"revenue": 39.95}) == (
            sent["track"]["event"],
            sent["track"]["properties"],
        )
        assert ("a1", "Docs", "Help") == (
            sent["page"]["anonymousId"],
            sent["page"]["name"],
            sent["page"]["category"],
        )
        assert ("g1", {"name": "Acme"}) == (sent["group"]["groupId"], sent["group"]["traits"])
        assert ("a1", "u1") == (sent["alias"]["previousId"], sent["alias"]["userId"])

    def test_future_resolves_with_wire_message(self, make_client: MakeClient) -> None:
        """A call's Future resolves, on delivery, with the message as sent."""
        result = make_client().track("u", "E").result(timeout=5)

        assert ("track", "E") == (result["type"], result["event"])
        assert result["messageId"]

    def test_callback_sees_delivery(self, make_client: MakeClient) -> None:
        """The optional callback is called with (None, message) once delivered."""
        seen: list[tuple[Exception | None, dict[str, Any]]] = []
        done = threading.Event()

        def callback(error: Exception | None, message: dict[str, Any]) -> None:
            seen.append((error, message))
            done.set()

        make_client().track("u", "E", callback=callback)

        assert done.wait(5)
        assert (None, "E") == (seen[0][0], seen[0][1]["event"])

    def test_invalid_call_fails_future_without_raising(self, make_client: MakeClient) -> None:
        """A track without an event fails its Future with invalid_message; nothing raises."""
        error = outcome(make_client().track("u"))

        assert isinstance(error, DeliveryError)
        assert ("invalid_message", None) == (error.code, error.status)
        assert "event" in error.reason


class TestWire:
    def test_request_shape(self, collector: Collector, make_client: MakeClient) -> None:
        """Each request has sentAt, Basic auth with the key, JSON, and our User-Agent."""
        make_client().track("u", "E").result(timeout=5)

        request = collector.batches()[0]
        assert 200 == request.status
        assert request.sent_at
        assert request.write_key_ok
        assert "application/json" == request.headers["Content-Type"]
        assert request.headers["User-Agent"].startswith(f"cdp_logging/{cdp_logging.__version__}")

    def test_message_fields(self, collector: Collector, make_client: MakeClient) -> None:
        """Each message has a unique messageId, context.library and a timestamp."""
        client = make_client(max_events_in_batch=50)
        for i in range(50):
            client.track(f"u{i}", "E", context={"locale": "fr"})
        assert client.flush(5)

        messages = collector.messages()
        assert 50 == len({m["messageId"] for m in messages})
        assert all(m["context"]["library"]["name"] == "cdp_logging" for m in messages)
        assert all(m["context"]["locale"] == "fr" for m in messages)
        assert all(m["timestamp"].endswith("+00:00") for m in messages)

    def test_gzip_reaches_the_wire(self, collector: Collector, make_client: MakeClient) -> None:
        """gzip=True sends Content-Encoding: gzip, and the collector reads it."""
        make_client(gzip=True).track("u", "E").result(timeout=5)

        assert collector.batches()[0].gzip
        assert 1 == len(collector.messages())

    def test_send_false_sends_nothing(self, collector: Collector, make_client: MakeClient) -> None:
        """send=False runs everything but the request; on_flush still sees the batch."""
        flushed: list[list[dict[str, Any]]] = []
        client = make_client(send=False, on_flush=flushed.append)
        client.track("u", "E")

        assert client.flush(5)
        assert [] == collector.batches()
        assert "E" == flushed[0][0]["event"]
        assert 1 == client.stats()["not_sent"]


class TestBatching:
    def test_first_message_is_sent_at_once(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """The first message goes without waiting for the batch size or the interval."""
        make_client(max_events_in_batch=100, flush_interval=60).track("u", "first")

        assert collector.wait_for_messages(1, timeout=5)

    def test_batch_size_starts_a_flush(self, collector: Collector, make_client: MakeClient) -> None:
        """Once max_events_in_batch are queued a flush starts; fewer wait for the interval."""
        client = make_client(max_events_in_batch=5, flush_interval=60)
        client.track("u", "first").result(timeout=5)
        for i in range(4):
            client.track("u", f"e{i}")

        assert not collector.wait_for_messages(5, timeout=0.3)  # 4 < 5: nothing due yet
        client.track("u", "e4")
        assert collector.wait_for_messages(6, timeout=5)
        assert [1, 5] == [b.message_count for b in collector.batches()]

    def test_interval_starts_a_flush(self, collector: Collector, make_client: MakeClient) -> None:
        """Fewer than a batch are sent once flush_interval has passed since the last flush."""
        client = make_client(max_events_in_batch=100, flush_interval=0.4)
        # The interval runs from the sender's flush of "first", which is after this
        # stamp; stamping after result() instead can miss most of the interval when the
        # test thread is scheduled late on a loaded machine.
        started = time.monotonic()
        client.track("u", "first").result(timeout=5)
        client.track("u", "second")
        client.track("u", "third")

        assert collector.wait_for_messages(3, timeout=5)
        waited = time.monotonic() - started
        assert 0.2 < waited < 3
        assert [1, 2] == [b.message_count for b in collector.batches()]

    def test_flush_trigger_sends_at_once(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A call type in flush_triggers starts a flush as soon as it is queued."""
        client = make_client(
            max_events_in_batch=100, flush_interval=60, flush_triggers=["identify"]
        )
        client.track("u", "first").result(timeout=5)
        client.track("u", "queued")
        client.identify("u")

        assert collector.wait_for_messages(3, timeout=5)

    def test_one_request_carries_what_is_queued_within_limits(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A flush sends everything queued, split at 2,500 messages and 500,000 bytes."""
        client = make_client(max_events_in_batch=2500, flush_interval=60, max_queue_size=20_000)
        client.track("u", "first").result(timeout=5)
        collector.faults.latency(0.5, count=1)  # hold the sender while the queue fills
        client.track("u", "slow")
        assert collector.wait_for_requests(1, timeout=5)
        padding = "x" * 900
        for i in range(6000):
            client.track("u", f"e{i}", {"pad": padding})

        assert client.flush(10)
        batches = collector.batches()
        assert 6002 == sum(b.message_count for b in batches)
        assert all(b.status == 200 for b in batches)
        assert max(b.message_count for b in batches) <= 2500
        assert max(b.body_bytes for b in batches) <= 500_000
        assert max(b.body_bytes for b in batches) > 400_000  # batches are filled, not trickled

    def test_many_small_messages_stay_within_both_limits(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """The smallest messages (~200 bytes) fill requests to the limits, never past them."""
        client = make_client(max_events_in_batch=2500, flush_interval=60, max_queue_size=20_000)
        client.track("u", "first").result(timeout=5)
        collector.faults.latency(0.5, count=1)  # hold the sender while the queue fills
        for _ in range(5000):
            client.track("u", "e")

        assert client.flush(10)
        assert 5001 == len(collector.messages())
        batches = collector.batches()
        assert max(b.message_count for b in batches) <= 2500
        assert max(b.body_bytes for b in batches) <= 500_000
        assert max(b.message_count for b in batches) > 2400


class TestLimits:
    def test_oversized_message_refused_alone(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A message over 32,000 bytes is refused; the messages around it are delivered."""
        errors: list[DeliveryError] = []
        client = make_client(on_error=errors.append)
        before = client.track("u", "before")
        big = client.track("u", "big", {"blob": "x" * 40_000})
        after = client.track("u", "after")

        assert client.flush(5)
        assert (None, None) == (outcome(before), outcome(after))
        error = outcome(big)
        assert isinstance(error, DeliveryError)
        assert "message_too_large" == error.code
        assert ["message_too_large"] == [e.code for e in errors]
        assert ["after", "before"] == sorted(m["event"] for m in collector.messages())

    def test_queue_full_drops_new_without_blocking(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """With the queue full, new messages are refused at once as queue_full."""
        collector.faults.latency(2.0, count=1)
        client = make_client(max_queue_size=10, max_events_in_batch=1000, flush_interval=60)
        # The sender gets stuck in a 2 s request with it; taken or not yet, at most 10 more fit.
        client.track("u", "in flight")
        started = time.monotonic()
        futures = [client.track("u", f"e{i}") for i in range(30)]
        elapsed = time.monotonic() - started

        assert elapsed < 0.5
        codes = [
            getattr(f.exception(timeout=0) if f.done() else None, "code", None) for f in futures
        ]
        assert codes.count("queue_full") >= 19
        assert client.stats()["errors"]["queue_full"] == codes.count("queue_full")


class TestOneRuleForAValidMessage:
    @pytest.mark.parametrize(
        "stamp",
        ["20240501T080000Z", "2024-W18-3T08:00:00+00:00", "2024-05-01T08+00:00"],
    )
    def test_a_timestamp_the_collector_refuses_is_refused_alone(
        self, collector: Collector, make_client: MakeClient, stamp: str
    ) -> None:
        """fromisoformat takes these; the protocol's rule does not. The client refuses the
        one message (invalid_message) and its five neighbours are delivered, instead of
        the whole batch getting a 400."""
        errors: list[DeliveryError] = []
        client = make_client(on_error=errors.append, flush_interval=60, max_events_in_batch=100)
        for i in range(3):
            client.track("u", f"good{i}")
        odd = client.track("u", "odd", timestamp=stamp)
        for i in range(3, 5):
            client.track("u", f"good{i}")

        assert client.flush(5)
        assert [f"good{i}" for i in range(5)] == [m["event"] for m in collector.messages()]
        assert 0 == collector.counts()["rejected_requests"]
        error = odd.exception(timeout=0)
        assert isinstance(error, DeliveryError)
        assert ("invalid_message", True) == (error.code, "timestamp" in error.reason)
        assert [error] == errors


class TestRetries:
    @pytest.mark.usefixtures("fast_retries")
    def test_5xx_is_retried_until_delivered(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A 500 is retried with backoff; the batch arrives once, with the same messageIds."""
        collector.faults.status(500, count=3)
        client = make_client()
        future = client.track("u", "E")

        assert outcome(future) is None
        assert [500, 500, 500, 200] == [b.status for b in collector.batches()]
        ids = {b.message_ids for b in collector.batches()}
        assert 1 == len(ids)
        assert 3 == client.stats()["retried"]

    def test_429_retry_after_is_honoured(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """After a 429 with Retry-After: 1 the next attempt waits at least a second."""
        collector.faults.status(429, count=1, retry_after=1)
        client = make_client()
        started = time.monotonic()

        assert outcome(client.track("u", "E"), timeout=10) is None
        assert time.monotonic() - started >= 1.0
        assert [429, 200] == [b.status for b in collector.batches()]

    @pytest.mark.usefixtures("fast_retries")
    def test_collector_down_at_start(self, collector: Collector, make_client: MakeClient) -> None:
        """Connection refused is retried; once the collector is back the message arrives."""
        collector.stop()
        client = make_client(max_retries=50)
        future = client.track("u", "E")
        assert not collector.wait_for_messages(1, timeout=0.2)
        collector.start()

        assert outcome(future, timeout=10) is None
        assert 1 == len(collector.messages())

    @pytest.mark.usefixtures("fast_retries")
    @pytest.mark.parametrize("status", [400, 404, 413])
    def test_other_4xx_not_retried_and_reported(
        self, collector: Collector, make_client: MakeClient, status: int
    ) -> None:
        """A 4xx other than 408/429 is reported with the server's reason and not retried."""
        collector.faults.status(status, count=1, reason="the server says no")
        errors: list[DeliveryError] = []
        client = make_client(on_error=errors.append)
        error = outcome(client.track("u", "E"))

        assert isinstance(error, DeliveryError)
        assert ("http_status", status) == (error.code, error.status)
        assert "the server says no" in error.reason
        assert 1 == len(collector.batches())
        assert [error] == errors
        assert "E" == error.messages[0]["event"]

    @pytest.mark.usefixtures("fast_retries")
    def test_retries_are_bounded(self, collector: Collector, make_client: MakeClient) -> None:
        """After max_retries the batch fails with the last reason; no endless retrying."""
        collector.faults.status(503)
        client = make_client(max_retries=2)
        error = outcome(client.track("u", "E"))

        assert isinstance(error, DeliveryError)
        assert ("http_status", 503) == (error.code, error.status)
        assert "gave up after 3 attempts" in error.reason
        assert 3 == len(collector.batches())
        assert {"delivered": 0, "failed": 1, "retried": 2} == {
            k: client.stats()[k] for k in ("delivered", "failed", "retried")
        }


class TestFlushAndClose:
    def test_flush_true_once_delivered(self, collector: Collector, make_client: MakeClient) -> None:
        """flush() returns True with everything queued before it delivered."""
        client = make_client(flush_interval=60, max_events_in_batch=1000)
        for i in range(100):
            client.track("u", f"e{i}")

        assert client.flush(5)
        assert 100 == len(collector.messages())

    def test_flush_false_at_timeout(self, collector: Collector, make_client: MakeClient) -> None:
        """flush(timeout) gives up at the timeout when the server is slow, and says so."""
        collector.faults.latency(3.0, count=1)
        client = make_client(timeout=10)
        client.track("u", "E")
        started = time.monotonic()

        assert not client.flush(0.3)
        assert time.monotonic() - started < 1.5
        assert client.flush(10)  # the slow request completes; nothing was lost
        assert 1 == len(collector.messages())

    def test_close_delivers_and_is_idempotent(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """close() delivers what is queued; a second close() returns at once."""
        client = make_client(flush_interval=60, max_events_in_batch=1000)
        for i in range(10):
            client.track("u", f"e{i}")
        client.close()
        started = time.monotonic()
        client.close()

        assert time.monotonic() - started < 0.1
        assert 10 == len(collector.messages())

    def test_calls_after_close_reported_not_raised(self, make_client: MakeClient) -> None:
        """A call after close() fails its Future with code closed; it does not raise."""
        errors: list[DeliveryError] = []
        client = make_client(on_error=errors.append)
        client.close()

        error = outcome(client.track("u", "late"))

        assert isinstance(error, DeliveryError)
        assert "closed" == error.code
        assert ["closed"] == [e.code for e in errors]

    @pytest.mark.usefixtures("fast_retries")
    def test_close_is_bounded_when_server_is_down(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """close(timeout) returns by its deadline and reports the rest as shutdown_timeout."""
        collector.faults.status(503)
        errors: list[DeliveryError] = []
        client = make_client(on_error=errors.append, max_retries=1000)
        futures = [client.track("u", f"e{i}") for i in range(5)]
        started = time.monotonic()
        client.close(timeout=0.5)

        assert time.monotonic() - started < 1.5
        codes = {getattr(outcome(f), "code", None) for f in futures}
        assert {"shutdown_timeout"} == codes
        assert 5 == client.stats()["errors"]["shutdown_timeout"]

    def test_flush_inside_a_callback_returns_at_once(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """flush() from a callback does not wait: it would wait for the very batch whose
        callback is running, and hold up every batch after it for its whole timeout."""
        clients: list[cdp_logging.Analytics] = []
        results: list[tuple[bool, float]] = []

        def on_flush(messages: list[dict[str, Any]]) -> None:
            started = time.monotonic()
            flushed = clients[0].flush(5)
            results.append((flushed, time.monotonic() - started))

        client = make_client(on_flush=on_flush, flush_interval=60, max_events_in_batch=1000)
        clients.append(client)
        client.track("u", "first")  # the first message is sent at once
        for i in range(3):
            client.track("u", f"e{i}")

        assert client.flush(5)
        assert 4 == len(collector.messages())
        assert results
        assert all(seconds < 1.0 for _, seconds in results), results

    def test_close_inside_a_callback_returns_at_once(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """close() (and then flush()) from on_error stops the client without waiting for
        its own batch; what was queued before it is still delivered."""
        collector.faults.status(400, count=1)
        clients: list[cdp_logging.Analytics] = []
        waited: list[float] = []
        queued = threading.Event()

        def on_error(error: DeliveryError) -> None:
            queued.wait(5)  # the later messages are in the queue before close()
            started = time.monotonic()
            clients[0].close(5)
            clients[0].flush(5)  # closed now: still no waiting for this batch
            waited.append(time.monotonic() - started)

        client = make_client(on_error=on_error, flush_interval=60, max_events_in_batch=1000)
        clients.append(client)
        refused = client.track("u", "refused")  # sent at once, answered 400
        later = [client.track("u", f"e{i}") for i in range(3)]
        queued.set()

        assert isinstance(outcome(refused), DeliveryError)
        assert [None, None, None] == [outcome(future) for future in later]
        assert ["e0", "e1", "e2"] == sorted(m["event"] for m in collector.messages())
        assert 1 == len(waited)
        assert waited[0] < 1.0
        assert client.closed

    def test_a_report_names_the_timeout_close_was_given(
        self, make_client: Callable[..., Analytics], collector: Collector
    ) -> None:
        """Issue 24 (11): close(0.5) on a client whose shutdown_timeout is 30 reports
        what it could not deliver as out of 0.5 s, not of 30 s."""
        errors: list[DeliveryError] = []
        client = make_client(shutdown_timeout=30, on_error=errors.append)
        collector.faults.refuse()  # every attempt fails: backoff until the deadline
        client.track("u", "E")
        started = time.monotonic()
        client.close(0.5)

        assert time.monotonic() - started < 5
        assert ["shutdown_timeout"] == [error.code for error in errors]
        assert "0.5s" in errors[0].reason, errors[0].reason
        assert "30s" not in errors[0].reason


class TestStats:
    def test_counters(self, collector: Collector, make_client: MakeClient) -> None:
        """stats() counts queued, delivered, dropped, failed and retried messages."""
        client = make_client()
        client.track("u", "ok").result(timeout=5)
        client.track("u")  # invalid: dropped

        stats = client.stats()
        assert {
            "queued": 1,
            "delivered": 1,
            "dropped": 1,
            "failed": 0,
            "retried": 0,
            "pending": 0,
        } == {
            k: stats[k] for k in ("queued", "delivered", "dropped", "failed", "retried", "pending")
        }
        assert {"invalid_message": 1} == stats["errors"]


class TestSecrets:
    def test_write_key_in_no_repr_or_error(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """The write key is in no repr, no error text, and no stderr line."""
        collector.faults.status(401, count=1, reason=f"bad key {WRITE_KEY}")
        errors: list[DeliveryError] = []
        client = make_client(on_error=errors.append)
        future = client.track("u", "E")
        error = outcome(future)
        token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()

        texts = [repr(client), repr(client.options), str(error), repr(error), str(errors[0].reason)]
        assert all(WRITE_KEY not in text and token not in text for text in texts)
        assert "<write key>" in str(error)
        assert "write key was refused" in str(error)


class TestIndependence:
    def test_clients_with_different_keys_and_hosts(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """Several clients with their own keys and hosts deliver independently."""
        with Collector(write_keys=("other-key",), strict=True) as other:
            first = make_client()
            second = make_client(write_key="other-key", host=other.url)
            first.track("u", "to first")
            second.track("u", "to second")
            assert first.flush(5)
            assert second.flush(5)

            assert ["to first"] == [m["event"] for m in collector.messages()]
            assert ["to second"] == [m["event"] for m in other.messages()]

    def test_one_failing_client_does_not_hold_up_another(
        self, collector: Collector, make_client: MakeClient
    ) -> None:
        """A client whose host is down does not delay a healthy one."""
        with Collector(strict=True) as down:
            url = down.url
        broken = make_client(host=url, max_retries=100)
        healthy = make_client()
        broken.track("u", "lost for now")

        assert outcome(healthy.track("u", "fine"), timeout=5) is None
        assert ["fine"] == [m["event"] for m in collector.messages()]
        assert json.dumps(broken.stats())  # stats stay readable while retrying
