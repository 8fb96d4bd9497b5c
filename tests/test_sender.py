"""The sender alone, with a transport of our own instead of a socket.

A socket cannot say "answer 413 only when the body holds more than three messages", nor
hold a request open until the test lets it go, so these tests hand the client a
``Transport`` that does (as httpx's MockTransport does for its clients). Everything
else is real: the client, the queue, the sender thread, settlement.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import cdp_logging
from cdp_logging import RetryPolicy
from cdp_logging._core.clock import SYSTEM_CLOCK
from cdp_logging._delivery.batch import narrowing_budget
from cdp_logging._delivery.settle import Progress
from cdp_logging._transports.base import Response
from cdp_logging._transports.mock import MockTransport
from cdp_logging._transports.requests import parse_retry_after

from .conftest import WRITE_KEY

FAST = RetryPolicy(base=0.001, cap=0.004)


class ScriptedTransport(MockTransport):
    """A MockTransport that also notes the real time each request came."""

    def __init__(self, answer: Callable[[list[dict[str, Any]]], Response]) -> None:
        super().__init__(answer)
        self.times: list[float] = []

    def send(self, body: bytes, timeout: float) -> Response:
        self.times.append(time.monotonic())
        return super().send(body, timeout)


OK = Response(200, "")


def client_with(transport: ScriptedTransport, **options: Any) -> cdp_logging.Analytics:
    options.setdefault("retry", FAST)
    options.setdefault("max_events_in_batch", 1000)
    options.setdefault("flush_interval", 60)
    return cdp_logging.Analytics(WRITE_KEY, "http://127.0.0.1:9", transport=transport, **options)


def track_all(client: cdp_logging.Analytics, events: list[str]) -> list[Any]:
    """Queue *events* to go as one batch at the next flush.

    The first message of a client goes at once, alone; a warm-up message takes that
    place (and its request is counted by the tests), so the events make one batch.
    """
    client.track("u", "warm-up").exception(timeout=5)
    return [client.track("u", event) for event in events]


class TestNetworkReason:
    @pytest.mark.parametrize(("host", "hint"), [(None, True), ("http://127.0.0.1:9", False)])
    def test_an_unreachable_default_host_says_how_to_set_another(
        self, host: str | None, hint: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A network failure names the host; the default one (no host=, no CDP_HOST) also
        says how to point elsewhere. The transport fails here: nothing leaves the machine."""
        from cdp_logging._transports.base import TransportError

        monkeypatch.delenv("CDP_HOST", raising=False)

        def unreachable(messages: list[dict[str, Any]]) -> Response:
            raise TransportError("ConnectionError: refused")

        errors: list[cdp_logging.DeliveryError] = []
        client = cdp_logging.Analytics(
            WRITE_KEY,
            host,
            transport=MockTransport(unreachable),
            max_retries=0,
            on_error=errors.append,
        )
        try:
            client.track("u", "E")
            assert client.flush(5)
        finally:
            client.close()

        (error,) = errors
        assert "could not reach " in error.reason
        assert ("host= or CDP_HOST" in error.reason) is hint


class TestRetryPolicy:
    def test_delays_are_equal_jitter_within_the_cap(self) -> None:
        """Each wait is in [d/2, d] with d doubling from base up to cap."""
        policy = RetryPolicy(base=0.5, cap=4.0)
        for attempt, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0), (5000, 4.0)]:
            waits = [policy.delay(attempt) for _ in range(200)]
            assert nominal / 2 <= min(waits), attempt
            assert max(waits) <= nominal, attempt

    def test_retry_after_lengthens_the_wait_up_to_its_cap(self) -> None:
        policy = RetryPolicy(base=0.01, cap=0.02, max_retry_after=5.0)
        assert 3.0 == policy.delay(1, retry_after=3.0)
        assert 5.0 == policy.delay(1, retry_after=3600.0)
        assert policy.delay(1, retry_after=0.0) <= 0.01  # shorter than backoff: backoff

    def test_invalid_values_are_refused(self) -> None:
        with pytest.raises(ValueError, match=r"retry\.base"):
            RetryPolicy(base=-1)
        with pytest.raises(ValueError, match=r"retry\.max_retries"):
            RetryPolicy(max_retries=True)

    def test_max_retries_option_and_policy_are_one_number(self) -> None:
        transport = ScriptedTransport(lambda _: OK)
        assert 3 == client_with(transport, max_retries=3).options.retry.max_retries
        assert 4 == client_with(transport, retry=RetryPolicy(max_retries=4)).options.max_retries
        assert 10 == client_with(transport).options.max_retries
        with pytest.raises(ValueError, match="disagrees"):
            client_with(transport, max_retries=3, retry=RetryPolicy(max_retries=4))

    def test_retry_after_as_seconds_and_as_an_http_date(self) -> None:
        now = 1_700_000_000.0
        assert 7.0 == parse_retry_after("7", now)
        assert 30.0 == parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now)
        assert 0.0 == parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now)
        assert parse_retry_after("soon", now) is None
        assert parse_retry_after(None, now) is None

    def test_the_sender_waits_what_retry_after_says_capped(self) -> None:
        """A 429 with Retry-After: 3600 waits the policy's cap, not an hour."""
        answers = iter([Response(429, "", retry_after=3600.0), OK])
        transport = ScriptedTransport(lambda _: next(answers))
        client = client_with(
            transport, retry=RetryPolicy(base=0.001, cap=0.001, max_retry_after=0.2)
        )
        future = client.track("u", "E")

        assert future.exception(timeout=5) is None
        waited = transport.times[1] - transport.times[0]
        assert 0.2 <= waited < 2.0, waited
        client.close()

    def test_retries_stop_at_max_retries(self) -> None:
        transport = ScriptedTransport(lambda _: Response(503, "down"))
        client = client_with(transport, max_retries=3)
        error = client.track("u", "E").exception(timeout=5)

        assert isinstance(error, cdp_logging.DeliveryError)
        assert ("http_status", 503) == (error.code, error.status)
        assert "gave up after 4 attempts" in error.reason
        assert 4 == len(transport.requests)
        client.close()


class TestSettlement:
    def test_progress_waits_for_a_prefix_settled_in_any_order(self) -> None:
        progress = Progress(SYSTEM_CLOCK)
        progress.settle(5, 10)
        assert not progress.wait(5, time.monotonic())
        progress.settle(10, 12)
        progress.settle(0, 5)
        assert progress.wait(12, time.monotonic())
        assert not progress.wait(13, time.monotonic() + 0.01)

    def test_flush_waits_for_a_batch_still_being_retried(self) -> None:
        """flush() is False while an older batch is being retried, True once it settles."""
        release = threading.Event()
        first_seen = threading.Event()

        def answer(messages: list[dict[str, Any]]) -> Response:
            if messages[0]["event"] == "old" and not release.is_set():
                first_seen.set()
                return Response(503, "")
            return OK

        transport = ScriptedTransport(answer)
        client = client_with(transport, max_events_in_batch=1, max_retries=1000)
        client.track("u", "old")
        assert first_seen.wait(5)
        client.track("u", "new")
        assert not client.flush(0.3)  # "new" may be delivered; "old" is not
        release.set()
        assert client.flush(5)
        assert {"old", "new"} == {m["event"] for m in transport.delivered()}
        client.close()


class TestTooLarge:
    def test_413_halves_the_batch_until_it_fits(self) -> None:
        """A server that takes at most 3 messages a request gets them all, in halves."""
        transport = ScriptedTransport(lambda m: OK if len(m) <= 3 else Response(413, ""))
        client = client_with(transport)
        futures = track_all(client, [f"e{i}" for i in range(20)])

        assert client.flush(5)
        assert all(f.exception(timeout=0) is None for f in futures)
        delivered = transport.delivered()
        events = [m["event"] for m in delivered[1:]]
        assert [f"e{i}" for i in range(20)] == events  # in order, once each
        sent_ids = [f.result(timeout=0)["messageId"] for f in futures]
        assert sent_ids == [m["messageId"] for m in delivered[1:]]  # the same ids throughout
        assert len(transport.requests) - 1 <= 2 * 20 - 1
        client.close()

    def test_a_message_too_large_alone_fails_alone(self) -> None:
        big = "x" * 5000

        def answer(messages: list[dict[str, Any]]) -> Response:
            size = len(json.dumps(messages))
            return OK if size < 4000 else Response(413, "Request Entity Too Large")

        transport = ScriptedTransport(answer)
        errors: list[cdp_logging.DeliveryError] = []
        client = client_with(transport, on_error=errors.append)
        client.track("u", "small", {"i": -1}).exception(timeout=5)  # the first goes alone
        futures = [client.track("u", "small", {"i": i}) for i in range(5)]
        futures.append(client.track("u", "big", {"pad": big}))
        futures += [client.track("u", "small", {"i": i}) for i in range(5, 10)]

        assert client.flush(5)
        assert 11 == sum(m["event"] == "small" for m in transport.delivered())
        [error] = errors
        assert ("http_status", 413, ["big"]) == (
            error.code,
            error.status,
            [m["event"] for m in error.messages],
        )
        assert "alone is" in error.reason
        assert futures[5].exception(timeout=0) is error
        client.close()

    def test_400s_inside_413_halves_share_one_budget(self) -> None:
        """A server that takes 50 messages at most and refuses them all: the 413 halving
        and the 400 narrowing together stay within the batch's one budget."""

        def answer(messages: list[dict[str, Any]]) -> Response:
            if messages[0]["event"] == "warm-up":
                return OK
            return Response(413, "") if len(messages) > 50 else Response(400, "bad")

        transport = ScriptedTransport(answer)
        errors: list[cdp_logging.DeliveryError] = []
        client = client_with(transport, on_error=errors.append, max_events_in_batch=2500)
        track_all(client, ["bad"] * 2000)

        assert client.flush(10)
        assert 2000 == sum(len(e.messages) for e in errors)
        refused_400 = sum(1 for r in transport.requests if len(r) <= 50) - 1  # not warm-up
        splits_413 = sum(1 for r in transport.requests if len(r) > 50)
        assert splits_413 <= 2 * 64  # halving 2,000 to 50 or fewer: 63 splits at most
        assert refused_400 <= 64 + narrowing_budget(2000), refused_400
        client.close()


class TestRefusedBatch:
    @staticmethod
    def refuse_bad(messages: list[dict[str, Any]]) -> Response:
        bad = any(m["event"] == "bad" for m in messages)
        return Response(400, "invalid message") if bad else OK

    def test_400_is_narrowed_to_the_bad_message(self) -> None:
        transport = ScriptedTransport(self.refuse_bad)
        errors: list[cdp_logging.DeliveryError] = []
        client = client_with(transport, on_error=errors.append)
        events = [f"e{i}" for i in range(100)]
        events[37] = "bad"
        futures = track_all(client, events)

        assert client.flush(5)
        assert 1 + 99 == len(transport.delivered())
        assert ["bad"] == [m["event"] for e in errors for m in e.messages]
        assert isinstance(futures[37].exception(timeout=0), cdp_logging.DeliveryError)
        assert len(transport.requests) - 2 <= narrowing_budget(100)
        client.close()

    def test_two_bad_messages_are_both_found(self) -> None:
        transport = ScriptedTransport(self.refuse_bad)
        errors: list[cdp_logging.DeliveryError] = []
        client = client_with(transport, on_error=errors.append)
        events = ["bad" if i in (3, 900) else f"e{i}" for i in range(1000)]
        track_all(client, events)

        assert client.flush(5)
        assert 1 + 998 == len(transport.delivered())
        assert 2 == sum(len(e.messages) for e in errors)
        assert len(transport.requests) - 2 <= narrowing_budget(1000)
        client.close()

    def test_a_batch_of_only_bad_messages_costs_the_budget_not_one_per_message(self) -> None:
        transport = ScriptedTransport(self.refuse_bad)
        errors: list[cdp_logging.DeliveryError] = []
        client = client_with(transport, on_error=errors.append)
        track_all(client, ["bad"] * 500)

        assert client.flush(5)
        assert 500 == sum(len(e.messages) for e in errors)
        assert len(transport.requests) - 2 <= narrowing_budget(500) < 500
        assert 500 == client.stats()["errors"]["http_status"]
        assert any("not narrowed further" in e.reason for e in errors)
        client.close()

    def test_other_4xx_are_not_split(self) -> None:
        transport = ScriptedTransport(lambda _: Response(401, "unknown write key"))
        client = client_with(transport)
        track_all(client, ["a", "b", "c", "d"])

        assert client.flush(5)
        assert [1, 4] == [len(r) for r in transport.requests]  # warm-up, then one request
        client.close()


class TestDeadlines:
    def test_flush_and_close_keep_their_deadlines_with_a_request_hung(self) -> None:
        release = threading.Event()
        entered = threading.Event()

        def hang(messages: list[dict[str, Any]]) -> Response:
            entered.set()
            release.wait(10)
            return OK

        transport = ScriptedTransport(hang)
        errors: list[cdp_logging.DeliveryError] = []
        client = client_with(transport, on_error=errors.append)
        client.track("u", "E")
        assert entered.wait(5)
        try:
            started = time.monotonic()
            assert not client.flush(0.3)
            flushed = time.monotonic() - started
            client.track("u", "queued behind it")
            started = time.monotonic()
            client.close(0.3)
            closed = time.monotonic() - started
        finally:
            release.set()

        assert 0.3 <= flushed < 1.5, flushed
        assert 0.3 <= closed < 1.5, closed
        assert ["shutdown_timeout"] == [e.code for e in errors]


class TestTransportOwnership:
    def test_a_transport_passed_in_is_never_closed(self) -> None:
        transport = ScriptedTransport(lambda _: OK)
        client = client_with(transport)
        client.track("u", "E")
        client.close()

        assert 0 == transport.closed
        assert 1 == len(transport.delivered())

    def test_a_reopened_handler_keeps_sending_through_it(self) -> None:
        transport = ScriptedTransport(lambda _: OK)
        handler = cdp_logging.AnalyticsHandler(
            WRITE_KEY, "http://127.0.0.1:9", transport=transport, retry=FAST
        )
        for round_ in range(3):
            handler.handle(make_record(f"e{round_}"))
            handler.close()  # as dictConfig does; the next record reopens

        assert 0 == transport.closed
        assert ["e0", "e1", "e2"] == [m["event"] for m in transport.delivered()]
        stats = handler.client.stats()
        assert (3, 3, {}) == (stats["queued"], stats["delivered"], stats["errors"])

    def test_counts_survive_a_reopen(self) -> None:
        """stats() counts since the client started: a reopen keeps errors and deliveries."""
        transport = ScriptedTransport(lambda _: OK)
        handler = cdp_logging.AnalyticsHandler(
            WRITE_KEY, "http://127.0.0.1:9", transport=transport, retry=FAST
        )
        handler.handle(make_record(""))  # a track without an event: invalid_message
        handler.handle(make_record("e0"))
        handler.close()
        handler.handle(make_record("e1"))
        handler.close()

        stats = handler.client.stats()
        assert (2, 2, {"invalid_message": 1}) == (
            stats["queued"],
            stats["delivered"],
            stats["errors"],
        )


def make_record(event: str) -> Any:
    import logging

    record = logging.LogRecord("app", logging.INFO, __file__, 1, "track", None, None)
    record.cdp = {"user_id": "u", "event": event}
    return record
